//! Alert rules: what the control plane checks after every scrape.
//!
//! | alert | condition (per instance) | default |
//! |---|---|---|
//! | `MemoryLeak` | heap allocated or RSS leaking by [`detector::assess`] | window 1h, horizon 2h, for 3m |
//! | `MemoryHigh` | RSS above a share of the memory limit | 85%, for 2m |
//! | `LatencyHigh` | p99 request duration above a threshold | 500 ms, for 5m |
//! | `ErrorRatioHigh` | share of 5xx answers above a threshold | 5%, for 2m |
//! | `TargetDown` | `/metrics` does not answer | for 30s |
//!
//! Every alert goes through the same lifecycle, Prometheus' with hysteresis added:
//! inactive → **pending** when its condition first holds → **firing** once it has
//! held at every evaluation for `for` → **resolved** once it has been clear at every
//! evaluation for `for` again. A threshold alert is clear only below
//! `threshold × clear_ratio` (0.9 by default), so a value hovering at the threshold
//! does not flap. A pending alert whose condition lapses is **cancelled**. Each
//! transition comes out of [`Engine::evaluate`] once, to be written to the event log
//! and, for firing and resolved, notified.
//!
//! The memory limit a leak is forecast against is, in order: the cgroup limit of a
//! process Warden runs, the configured `memory_limit`, the limit the instance reports
//! (`warden_memory_limit_bytes`), this machine's RAM.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::compare::{self, Baseline, CompareRule};
use crate::detector::{self, AlertState, Assessment, LeakRule, LeakTracker};
use crate::scrape::InstanceScrape;

/// A leak of heap allocated or RSS.
pub const MEMORY_LEAK: &str = "MemoryLeak";
/// RSS above a share of the memory limit.
pub const MEMORY_HIGH: &str = "MemoryHigh";
/// p99 request duration above a threshold.
pub const LATENCY_HIGH: &str = "LatencyHigh";
/// Share of 5xx answers above a threshold.
pub const ERROR_RATIO_HIGH: &str = "ErrorRatioHigh";
/// `/metrics` does not answer.
pub const TARGET_DOWN: &str = "TargetDown";
/// The name of every alert. Prometheus' rules in `ops/prometheus` fire the same
/// names, so an alert from Alertmanager and one of these have the same effects
/// (incidents, rollbacks) and the same configuration keys (`--rollback-on`,
/// `[automation] alerts`).
pub const ALERTS: [&str; 5] = [
    MEMORY_LEAK,
    MEMORY_HIGH,
    LATENCY_HIGH,
    ERROR_RATIO_HIGH,
    TARGET_DOWN,
];

/// Every rule, as read from the `[alerts]` table of the config file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertRules {
    /// Memory leak on heap allocated and on RSS.
    pub leak: LeakAlert,
    /// RSS above `threshold` × the memory limit.
    pub memory_high: ThresholdRule,
    /// p99 latency above `threshold` seconds.
    pub latency_p99: ThresholdRule,
    /// 5xx ratio above `threshold` (0 to 1).
    pub error_ratio: ThresholdRule,
    /// `/metrics` not answering.
    pub target_down: TargetDownRule,
}

impl Default for AlertRules {
    fn default() -> Self {
        Self {
            leak: LeakAlert::default(),
            memory_high: ThresholdRule::new(0.85, 120),
            latency_p99: ThresholdRule::new(0.5, 300),
            error_ratio: ThresholdRule::new(0.05, 120),
            target_down: TargetDownRule::default(),
        }
    }
}

impl AlertRules {
    /// Checks every rule, naming the bad key.
    pub fn validate(&self) -> Result<(), String> {
        self.leak
            .rule
            .validate()
            .map_err(|e| format!("alerts.leak: {e}"))?;
        self.leak
            .compare
            .validate()
            .map_err(|e| format!("alerts.leak.compare: {e}"))?;
        for (name, rule) in [
            ("memory_high", &self.memory_high),
            ("latency_p99", &self.latency_p99),
            ("error_ratio", &self.error_ratio),
        ] {
            if !(rule.threshold.is_finite() && rule.threshold > 0.0) {
                return Err(format!("alerts.{name}.threshold must be a positive number"));
            }
            if !(rule.clear_ratio > 0.0 && rule.clear_ratio <= 1.0) {
                return Err(format!("alerts.{name}.clear_ratio must be in (0, 1]"));
            }
        }
        if self.memory_high.threshold > 1.0 {
            return Err("alerts.memory_high.threshold is a share of the limit: at most 1".into());
        }
        if self.error_ratio.threshold > 1.0 {
            return Err("alerts.error_ratio.threshold is a share of requests: at most 1".into());
        }
        Ok(())
    }
}

/// The leak rule and the limit it forecasts against.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct LeakAlert {
    /// Whether the rule runs.
    pub enabled: bool,
    /// A configured memory limit in bytes, used when a process has no cgroup limit.
    pub memory_limit: Option<u64>,
    /// How a new release is compared with the one it replaced
    /// (`[alerts.leak.compare]`, see [`crate::compare`]).
    pub compare: CompareRule,
    /// The detector's settings: `window`, `horizon`, `for`, `significance`,
    /// `min_rate_bytes_per_s`.
    #[serde(flatten)]
    pub rule: LeakRule,
}

impl Default for LeakAlert {
    fn default() -> Self {
        Self {
            enabled: true,
            memory_limit: None,
            compare: CompareRule::default(),
            rule: LeakRule::default(),
        }
    }
}

/// A rule on one value against a threshold.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdRule {
    /// Whether the rule runs.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Fire above this.
    pub threshold: f64,
    /// How long the condition must hold before firing, and be clear before resolving.
    #[serde(rename = "for", with = "humantime_serde")]
    pub for_: Duration,
    /// Clear only below `threshold × clear_ratio`.
    #[serde(default = "default_clear_ratio")]
    pub clear_ratio: f64,
    /// Latency and error rules ignore instances serving fewer requests per second
    /// than this: a single slow request out of three is not an incident.
    #[serde(default = "default_min_request_rate")]
    pub min_request_rate: f64,
}

impl ThresholdRule {
    fn new(threshold: f64, for_secs: u64) -> Self {
        Self {
            enabled: true,
            threshold,
            for_: Duration::from_secs(for_secs),
            clear_ratio: default_clear_ratio(),
            min_request_rate: default_min_request_rate(),
        }
    }
}

/// The target-down rule.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TargetDownRule {
    /// Whether the rule runs.
    pub enabled: bool,
    /// How long a target must stay down before firing.
    #[serde(rename = "for", with = "humantime_serde")]
    pub for_: Duration,
}

impl Default for TargetDownRule {
    fn default() -> Self {
        Self {
            enabled: true,
            for_: Duration::from_secs(30),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_clear_ratio() -> f64 {
    0.9
}
fn default_min_request_rate() -> f64 {
    0.5
}

/// What an alert transition turned into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The condition holds; waiting for `for`.
    Pending,
    /// The alert fired.
    Firing,
    /// A firing alert's condition has been clear for `for`.
    Resolved,
    /// A pending alert's condition lapsed before it fired.
    Cancelled,
}

impl Phase {
    /// The event kind for this phase: `alert.pending`, `alert.firing`, ...
    #[must_use]
    pub fn event_kind(self) -> &'static str {
        match self {
            Self::Pending => "alert.pending",
            Self::Firing => "alert.firing",
            Self::Resolved => "alert.resolved",
            Self::Cancelled => "alert.cancelled",
        }
    }
}

/// One alert changing phase.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transition {
    /// Stable identity of the alert: `alert/instance`.
    pub fingerprint: String,
    /// Rule name: `MemoryLeak`, `MemoryHigh`, `LatencyHigh`, `ErrorRatioHigh`, `TargetDown`.
    pub alert: &'static str,
    /// `critical` or `warning`.
    pub severity: &'static str,
    /// The new phase.
    pub phase: Phase,
    /// `host:port`.
    pub instance: String,
    /// The release the instance runs.
    pub release: String,
    /// One line for people.
    pub summary: String,
    /// The evidence.
    pub description: String,
    /// Labels: instance, release, and for leaks `evidence` (heap, rss, heap+rss).
    pub labels: BTreeMap<String, String>,
    /// When (unix ms).
    pub at_ms: i64,
    /// Facts for the event log: the measured value, rate, forecast, ...
    pub details: serde_json::Value,
}

/// An alert that is pending or firing now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActiveAlert {
    /// The latest transition (pending or firing) with its wording.
    pub last: Transition,
}

/// Per-instance state between evaluations.
struct Instance {
    release: String,
    /// When its process started (unix seconds), if it reports
    /// `process_start_time_seconds`: only then is its age known, and it can be
    /// compared with its predecessor.
    born: Option<f64>,
    heap: VecDeque<(f64, f64)>,
    rss: VecDeque<(f64, f64)>,
    alerts: HashMap<&'static str, Alert>,
}

struct Alert {
    tracker: LeakTracker,
    /// The latest pending or firing transition, for [`Engine::active`].
    last: Option<Transition>,
}

/// A condition evaluated for one alert at one instance.
struct Check {
    alert: &'static str,
    severity: &'static str,
    for_: Duration,
    /// `Some(true)` holds, `Some(false)` clear, `None` in the hysteresis band (keep
    /// the current state) or not applicable.
    holds: Option<bool>,
    summary: String,
    description: String,
    labels: Vec<(&'static str, String)>,
    details: serde_json::Value,
}

/// Evaluates the rules after each scrape.
pub struct Engine {
    rules: AlertRules,
    instances: HashMap<String, Instance>,
    /// What each new release is compared with; `None` when there is nothing.
    baselines: HashMap<String, Option<Baseline>>,
    machine_ram: Option<f64>,
}

impl Engine {
    /// An engine for `rules` (validate them first).
    #[must_use]
    pub fn new(rules: AlertRules) -> Self {
        Self {
            rules,
            instances: HashMap::new(),
            baselines: HashMap::new(),
            machine_ram: warden_telemetry::memory_limit(None)
                .filter(|l| l.source == warden_telemetry::LimitSource::MachineRam)
                .map(|l| l.bytes as f64),
        }
    }

    /// The rules in force.
    #[must_use]
    pub fn rules(&self) -> &AlertRules {
        &self.rules
    }

    /// Feeds one round of scrapes and returns the alert transitions it causes.
    /// Instances absent from `scrapes` are forgotten; their active alerts resolve.
    pub fn evaluate(&mut self, scrapes: &[InstanceScrape]) -> Vec<Transition> {
        let mut out = Vec::new();
        let present: HashSet<&str> = scrapes.iter().map(|s| s.target.instance.as_str()).collect();
        let now_ms = scrapes
            .first()
            .map_or_else(warden_store::now_ms, |s| s.at_ms);
        let gone: Vec<String> = self
            .instances
            .keys()
            .filter(|k| !present.contains(k.as_str()))
            .cloned()
            .collect();
        for instance in gone {
            if let Some(state) = self.instances.remove(&instance) {
                for (_, alert) in state.alerts {
                    if let Some(mut last) = alert.last.filter(|t| t.phase == Phase::Firing) {
                        last.phase = Phase::Resolved;
                        last.at_ms = now_ms;
                        last.summary = format!("{} (instance removed)", last.summary);
                        out.push(last);
                    }
                }
            }
        }
        // A release no longer running needs no baseline; deployed again, it is
        // looked up again.
        let instances = &self.instances;
        self.baselines
            .retain(|release, _| instances.values().any(|i| &i.release == release));
        for scrape in scrapes {
            let checks = self.checks(scrape);
            let Some(state) = self.instances.get_mut(&scrape.target.instance) else {
                continue;
            };
            for check in checks {
                let alert = state.alerts.entry(check.alert).or_insert_with(|| Alert {
                    tracker: LeakTracker::new(&LeakRule {
                        for_: check.for_,
                        ..LeakRule::default()
                    }),
                    last: None,
                });
                alert.tracker.set_for(check.for_);
                let before = alert.tracker.state();
                let after = match check.holds {
                    Some(holds) => alert
                        .tracker
                        .observe_condition(scrape.at_ms as f64 / 1000.0, holds),
                    None => before,
                };
                let phase = match (before, after) {
                    (AlertState::Inactive, AlertState::Pending { .. }) => Some(Phase::Pending),
                    (
                        AlertState::Inactive | AlertState::Pending { .. },
                        AlertState::Firing { .. },
                    ) => Some(Phase::Firing),
                    (AlertState::Pending { .. }, AlertState::Inactive) => Some(Phase::Cancelled),
                    (AlertState::Firing { .. }, AlertState::Inactive) => Some(Phase::Resolved),
                    _ => None,
                };
                let Some(phase) = phase else {
                    continue;
                };
                let mut labels: BTreeMap<String, String> = BTreeMap::from([
                    ("alertname".to_owned(), check.alert.to_owned()),
                    ("instance".to_owned(), scrape.target.instance.clone()),
                    ("release".to_owned(), state.release.clone()),
                    ("severity".to_owned(), check.severity.to_owned()),
                ]);
                labels.extend(check.labels.into_iter().map(|(k, v)| (k.to_owned(), v)));
                let transition = Transition {
                    fingerprint: format!("{}/{}", check.alert, scrape.target.instance),
                    alert: check.alert,
                    severity: check.severity,
                    phase,
                    instance: scrape.target.instance.clone(),
                    release: state.release.clone(),
                    summary: if phase == Phase::Resolved {
                        alert.last.as_ref().map_or_else(
                            || check.summary.clone(),
                            |l| format!("resolved: {}", l.summary),
                        )
                    } else {
                        check.summary
                    },
                    description: check.description,
                    labels,
                    at_ms: scrape.at_ms,
                    details: check.details,
                };
                alert.last = match phase {
                    Phase::Pending | Phase::Firing => Some(transition.clone()),
                    Phase::Resolved | Phase::Cancelled => None,
                };
                out.push(transition);
            }
        }
        out
    }

    /// Seeds an instance's memory windows with history (from Prometheus, say), so a
    /// leak already under way is judged at once rather than after a window's wait.
    pub fn backfill(
        &mut self,
        instance: &str,
        release: &str,
        heap: &[(f64, f64)],
        rss: &[(f64, f64)],
    ) {
        let state = self
            .instances
            .entry(instance.to_owned())
            .or_insert_with(|| Instance {
                release: release.to_owned(),
                born: None,
                heap: VecDeque::new(),
                rss: VecDeque::new(),
                alerts: HashMap::new(),
            });
        state.heap = heap.iter().copied().collect();
        state.rss = rss.iter().copied().collect();
    }

    /// Releases running here young enough to be compared with the release they
    /// replaced, whose baseline has not been given yet ([`Engine::set_baseline`]).
    #[must_use]
    pub fn releases_to_compare(&self) -> Vec<String> {
        let compare = &self.rules.leak.compare;
        if !(self.rules.leak.enabled && compare.enabled) {
            return Vec::new();
        }
        let mut list: Vec<String> = self
            .instances
            .values()
            .filter(|i| !self.baselines.contains_key(&i.release))
            .filter(|i| {
                let newest = i.heap.back().or(i.rss.back()).map(|&(t, _)| t);
                matches!((i.born, newest), (Some(born), Some(now)) if now - born <= compare.period.as_secs_f64())
            })
            .map(|i| i.release.clone())
            .collect();
        list.sort();
        list.dedup();
        list
    }

    /// What `release` is compared with while young; `None`: nothing (it is then
    /// judged by the detector alone).
    pub fn set_baseline(&mut self, release: &str, baseline: Option<Baseline>) {
        self.baselines.insert(release.to_owned(), baseline);
    }

    /// Alerts pending or firing now, firing first.
    #[must_use]
    pub fn active(&self) -> Vec<ActiveAlert> {
        let mut list: Vec<ActiveAlert> = self
            .instances
            .values()
            .flat_map(|i| i.alerts.values())
            .filter_map(|a| a.last.clone())
            .map(|last| ActiveAlert { last })
            .collect();
        list.sort_by_key(|a| (a.last.phase != Phase::Firing, a.last.fingerprint.clone()));
        list
    }

    /// Updates the instance's memory windows and returns this round's checks.
    fn checks(&mut self, scrape: &InstanceScrape) -> Vec<Check> {
        let rules = self.rules.clone();
        let window = rules.leak.rule.window.as_secs_f64();
        let limit = self.limit_for(scrape);
        let state = self
            .instances
            .entry(scrape.target.instance.clone())
            .or_insert_with(|| Instance {
                release: scrape.target.release.clone(),
                born: None,
                heap: VecDeque::new(),
                rss: VecDeque::new(),
                alerts: HashMap::new(),
            });
        if state.release != scrape.target.release {
            // A new release on the same address is a new process: its memory history
            // starts again.
            state.release = scrape.target.release.clone();
            state.born = None;
            state.heap.clear();
            state.rss.clear();
        }
        let now = scrape.at_ms as f64 / 1000.0;
        // A restart at the same address and release is a new process too.
        if let Some(started) = scrape
            .samples
            .iter()
            .find(|s| s.name == compare::PROCESS_START)
            .map(|s| s.value)
            .filter(|t| t.is_finite() && *t <= now)
        {
            state.born = Some(started);
        }
        for (series, value) in [
            (&mut state.heap, scrape.memory.heap_allocated),
            (&mut state.rss, scrape.memory.rss),
        ] {
            if let Some(v) = value
                && series.back().is_none_or(|(t, _)| *t < now)
            {
                series.push_back((now, v));
            }
            while series.front().is_some_and(|(t, _)| *t < now - window) {
                series.pop_front();
            }
        }
        let release = &state.release;
        let instance = &scrape.target.instance;
        let mut checks = Vec::new();

        if rules.target_down.enabled {
            checks.push(Check {
                alert: TARGET_DOWN,
                severity: "critical",
                for_: rules.target_down.for_,
                holds: Some(!scrape.up),
                summary: format!("{instance} (release {release}) does not answer /metrics"),
                description: scrape.error.clone().unwrap_or_default(),
                labels: Vec::new(),
                details: serde_json::json!({ "error": scrape.error }),
            });
        }

        if rules.leak.enabled
            && let Some(limit) = limit
        {
            let rule = &rules.leak.rule;
            let heap = detector::assess(state.heap.make_contiguous(), limit, rule);
            let rss = detector::assess(state.rss.make_contiguous(), limit, rule);
            let compared = match (self.baselines.get(release), state.born) {
                (Some(Some(baseline)), Some(born)) if rules.leak.compare.enabled => {
                    let judge = |points: &VecDeque<(f64, f64)>, against: &[Vec<(f64, f64)>]| {
                        let aged: Vec<(f64, f64)> =
                            points.iter().map(|&(t, v)| (t - born, v)).collect();
                        compare::compare(&aged, against, limit, rule, &rules.leak.compare)
                    };
                    Some(Compared {
                        release: baseline.release.clone(),
                        heap: judge(&state.heap, &baseline.heap),
                        rss: judge(&state.rss, &baseline.rss),
                        for_: rules.leak.compare.for_,
                    })
                }
                _ => None,
            };
            checks.push(leak_check(
                instance,
                release,
                &heap,
                &rss,
                compared.as_ref(),
                limit,
                rule,
                scrape.at_ms,
            ));
        }

        if rules.memory_high.enabled {
            let rule = &rules.memory_high;
            if let (Some(rss), Some(limit)) = (scrape.memory.rss, limit) {
                let share = rss / limit;
                checks.push(Check {
                    alert: MEMORY_HIGH,
                    severity: "warning",
                    for_: rule.for_,
                    holds: hysteresis(share, rule),
                    summary: format!(
                        "{instance} (release {release}) uses {:.0}% of its memory limit ({} of {})",
                        share * 100.0,
                        mib(rss),
                        mib(limit)
                    ),
                    description: format!("RSS above {:.0}% of the limit", rule.threshold * 100.0),
                    labels: Vec::new(),
                    details: serde_json::json!({ "rss_bytes": rss, "limit_bytes": limit, "share": share }),
                });
            }
        }

        if let Some(traffic) = scrape.traffic {
            let busy = |rule: &ThresholdRule| traffic.request_rate >= rule.min_request_rate;
            let rule = &rules.latency_p99;
            if rule.enabled {
                let holds = match traffic.p99 {
                    Some(p99) if busy(rule) => hysteresis(p99, rule),
                    _ => Some(false),
                };
                checks.push(Check {
                    alert: LATENCY_HIGH,
                    severity: "warning",
                    for_: rule.for_,
                    holds,
                    summary: format!(
                        "p99 latency on {instance} (release {release}) is {:.0} ms (threshold {:.0} ms)",
                        traffic.p99.unwrap_or(0.0) * 1000.0,
                        rule.threshold * 1000.0
                    ),
                    description: format!("{:.1} requests/s", traffic.request_rate),
                    labels: Vec::new(),
                    details: serde_json::json!({ "p99_seconds": traffic.p99, "request_rate": traffic.request_rate }),
                });
            }
            let rule = &rules.error_ratio;
            if rule.enabled {
                let holds = if busy(rule) {
                    hysteresis(traffic.error_ratio, rule)
                } else {
                    Some(false)
                };
                checks.push(Check {
                    alert: ERROR_RATIO_HIGH,
                    severity: "critical",
                    for_: rule.for_,
                    holds,
                    summary: format!(
                        "{:.1}% of requests to {instance} (release {release}) fail with 5xx (threshold {:.1}%)",
                        traffic.error_ratio * 100.0,
                        rule.threshold * 100.0
                    ),
                    description: format!("{:.1} requests/s", traffic.request_rate),
                    labels: Vec::new(),
                    details: serde_json::json!({ "error_ratio": traffic.error_ratio, "request_rate": traffic.request_rate }),
                });
            }
        }
        checks
    }

    /// The limit a leak at this instance is forecast against (module docs).
    fn limit_for(&self, scrape: &InstanceScrape) -> Option<f64> {
        let cgroup = scrape
            .target
            .pid
            .and_then(|pid| warden_telemetry::memory_limit(Some(pid)))
            .filter(|l| l.source == warden_telemetry::LimitSource::Cgroup)
            .map(|l| l.bytes as f64);
        cgroup
            .or(self.rules.leak.memory_limit.map(|b| b as f64))
            .or(scrape.memory.limit)
            .or(self.machine_ram)
    }
}

/// `Some(true)` above the threshold, `Some(false)` below the clear level, `None` in
/// between (keep the current state).
fn hysteresis(value: f64, rule: &ThresholdRule) -> Option<bool> {
    if value > rule.threshold {
        Some(true)
    } else if value < rule.threshold * rule.clear_ratio {
        Some(false)
    } else {
        None
    }
}

fn mib(bytes: f64) -> String {
    format!("{:.0} MiB", bytes / 1_048_576.0)
}

fn mb_per_min(bytes_per_s: f64) -> f64 {
    bytes_per_s * 60.0 / 1e6
}

/// A young release compared with the one it replaced ([`compare::compare`]).
struct Compared {
    /// The release compared with.
    release: String,
    heap: Option<Assessment>,
    rss: Option<Assessment>,
    /// The comparison's own `for`.
    for_: Duration,
}

impl Compared {
    fn leaking(&self) -> bool {
        [&self.heap, &self.rss]
            .iter()
            .any(|a| a.as_ref().is_some_and(|a| a.leaking))
    }
}

/// The leak check from the heap and RSS assessments of one instance, and from its
/// comparison with the previous release while it is young. The detector's verdict
/// comes first; the comparison decides only when the detector finds no leak.
#[allow(clippy::too_many_arguments)]
fn leak_check(
    instance: &str,
    release: &str,
    heap: &Assessment,
    rss: &Assessment,
    compared: Option<&Compared>,
    limit: f64,
    rule: &LeakRule,
    now_ms: i64,
) -> Check {
    let by_comparison = !(heap.leaking || rss.leaking) && compared.is_some_and(Compared::leaking);
    let unjudged = detector::insufficient(0.0);
    let (heap, rss, for_, than, what) = match compared.filter(|_| by_comparison) {
        Some(c) => (
            c.heap.as_ref().unwrap_or(&unjudged),
            c.rss.as_ref().unwrap_or(&unjudged),
            c.for_,
            format!(" faster than {} did at the same age", c.release),
            format!("excess over {}", c.release),
        ),
        None => (heap, rss, rule.for_, String::new(), "floor".to_owned()),
    };
    let evidence = match (heap.leaking, rss.leaking) {
        (true, true) => "heap+rss",
        (true, false) => "heap",
        (false, true) => "rss",
        (false, false) => "none",
    };
    // The faster-growing leaking series sets the forecast; heap wins a tie because it
    // is the direct measure of live objects.
    let lead = match evidence {
        "rss" => rss,
        "heap+rss" if rss.exhaustion_in < heap.exhaustion_in => rss,
        _ => heap,
    };
    let exhausts_at = lead.exhaustion_in.map(|d| {
        let at = now_ms / 1000 + i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2);
        time::OffsetDateTime::from_unix_timestamp(at)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default()
    });
    let forecast = lead.exhaustion_in.map_or_else(
        || "no exhaustion forecast".to_owned(),
        |d| {
            format!(
                "exhausts the {} limit in about {} (at {})",
                mib(limit),
                humantime::format_duration(Duration::from_secs(d.as_secs() / 60 * 60)),
                exhausts_at.clone().unwrap_or_default()
            )
        },
    );
    let evidence_text = match evidence {
        "heap+rss" => "heap allocated and RSS both grow: live objects are accumulating",
        "heap" => "heap allocated grows (RSS has not confirmed yet): live objects are accumulating",
        "rss" => {
            "RSS grows while heap allocated does not: memory outside the Rust heap (allocator caching, native code, thread stacks)"
        }
        _ => "",
    };
    Check {
        alert: MEMORY_LEAK,
        severity: "critical",
        for_,
        holds: Some(heap.leaking || rss.leaking),
        summary: format!(
            "memory leak in release {release} on {instance}: {} +{:.1} MB/min{than}, {forecast}",
            if evidence == "rss" { "RSS" } else { "heap" },
            mb_per_min(lead.rate_bytes_per_s),
        ),
        description: format!(
            "{evidence_text}. Heap: {}. RSS: {}.",
            heap.summary_of(&what),
            rss.summary_of(&what)
        ),
        labels: vec![("evidence", evidence.to_owned())],
        details: serde_json::json!({
            "evidence": evidence,
            "rate_mb_per_min": mb_per_min(lead.rate_bytes_per_s),
            "exhaustion_in_s": lead.exhaustion_in.map(|d| d.as_secs()),
            "exhausts_at": exhausts_at,
            "limit_bytes": limit,
            "heap": heap,
            "rss": rss,
            "method": if by_comparison { "comparison" } else { "detector" },
            "compared_with": compared.map(|c| serde_json::json!({
                "release": c.release,
                "heap": c.heap,
                "rss": c.rss,
            })),
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::scrape::{Memory, Target, Traffic};

    fn scrape(at_s: i64, up: bool, memory: Memory, traffic: Option<Traffic>) -> InstanceScrape {
        InstanceScrape {
            target: Target {
                instance: "127.0.0.1:9001".into(),
                url: "http://127.0.0.1:9001/metrics".into(),
                release: "v2".into(),
                pid: None,
            },
            at_ms: at_s * 1000,
            up,
            error: (!up).then(|| "connection refused".to_owned()),
            memory,
            traffic,
            samples: Vec::new(),
        }
    }

    fn rules_without_leak() -> AlertRules {
        let mut rules = AlertRules::default();
        rules.leak.enabled = false;
        rules
    }

    fn phases(transitions: &[Transition], alert: &str) -> Vec<Phase> {
        transitions
            .iter()
            .filter(|t| t.alert == alert)
            .map(|t| t.phase)
            .collect()
    }

    #[test]
    fn target_down_goes_pending_firing_resolved() {
        let mut engine = Engine::new(rules_without_leak());
        let mut seen = Vec::new();
        for s in 0..100 {
            let up = !(10..60).contains(&s);
            seen.extend(engine.evaluate(&[scrape(s, up, Memory::default(), None)]));
        }
        assert_eq!(
            phases(&seen, "TargetDown"),
            [Phase::Pending, Phase::Firing, Phase::Resolved]
        );
        let firing = seen.iter().find(|t| t.phase == Phase::Firing).unwrap();
        assert_eq!(firing.at_ms, 40_000, "fires after `for` (30 s)");
        assert_eq!(firing.labels["release"], "v2");
        assert!(firing.summary.contains("release v2"), "{}", firing.summary);
        let resolved = seen.iter().find(|t| t.phase == Phase::Resolved).unwrap();
        assert_eq!(resolved.at_ms, 90_000, "resolves after 30 s clear");
        assert!(engine.active().is_empty());
    }

    #[test]
    fn a_short_blip_is_cancelled_not_fired() {
        let mut engine = Engine::new(rules_without_leak());
        let mut seen = Vec::new();
        for s in 0..60 {
            seen.extend(engine.evaluate(&[scrape(
                s,
                !(5..10).contains(&s),
                Memory::default(),
                None,
            )]));
        }
        assert_eq!(
            phases(&seen, "TargetDown"),
            [Phase::Pending, Phase::Cancelled]
        );
    }

    #[test]
    fn an_error_ratio_hovering_at_the_threshold_does_not_flap() {
        let mut engine = Engine::new(rules_without_leak());
        let traffic = |ratio| {
            Some(Traffic {
                request_rate: 100.0,
                error_ratio: ratio,
                p50: Some(0.001),
                p99: Some(0.01),
            })
        };
        let mut seen = Vec::new();
        // 3 minutes at 8%, then 10 minutes alternating 4.9% / 5.1% around the 5%
        // threshold (inside the hysteresis band), then clean.
        for s in 0..180 {
            seen.extend(engine.evaluate(&[scrape(s, true, Memory::default(), traffic(0.08))]));
        }
        for s in 180..780 {
            let ratio = if s % 2 == 0 { 0.049 } else { 0.051 };
            seen.extend(engine.evaluate(&[scrape(s, true, Memory::default(), traffic(ratio))]));
        }
        for s in 780..1000 {
            seen.extend(engine.evaluate(&[scrape(s, true, Memory::default(), traffic(0.0))]));
        }
        assert_eq!(
            phases(&seen, "ErrorRatioHigh"),
            [Phase::Pending, Phase::Firing, Phase::Resolved]
        );
        assert!(phases(&seen, "LatencyHigh").is_empty());
    }

    #[test]
    fn idle_instances_do_not_alert_on_latency() {
        let mut engine = Engine::new(rules_without_leak());
        let slow = Some(Traffic {
            request_rate: 0.1,
            error_ratio: 1.0,
            p50: Some(3.0),
            p99: Some(9.0),
        });
        let seen: Vec<_> = (0..1000)
            .flat_map(|s| engine.evaluate(&[scrape(s, true, Memory::default(), slow)]))
            .collect();
        assert!(seen.is_empty(), "{seen:?}");
    }

    fn leak_rules() -> AlertRules {
        let mut rules = AlertRules::default();
        rules.leak.memory_limit = Some(1 << 30);
        rules
    }

    #[test]
    fn a_leak_fires_naming_release_rate_forecast_and_evidence() {
        let mut engine = Engine::new(leak_rules());
        let mut seen = Vec::new();
        // 200 MiB steady with ±1 MiB jitter for 10 min, then +10 MB/min on heap and RSS.
        for s in (0..3600).step_by(5) {
            let jitter = f64::from((s * 7919 % 13) as i32 - 6) * 170_000.0;
            let grown = if s > 600 {
                (s - 600) as f64 * 10e6 / 60.0
            } else {
                0.0
            };
            let heap = 150e6 + grown + jitter;
            let memory = Memory {
                rss: Some(heap + 50e6),
                heap_allocated: Some(heap),
                limit: None,
            };
            seen.extend(engine.evaluate(&[scrape(s, true, memory, None)]));
        }
        let firing = seen
            .iter()
            .find(|t| t.alert == "MemoryLeak" && t.phase == Phase::Firing)
            .expect("the leak fires");
        assert!(firing.at_ms > 600_000, "not before the leak began");
        assert_eq!(firing.labels["evidence"], "heap+rss");
        assert_eq!(firing.details["method"], "detector");
        assert!(
            firing.description.contains("floor grows"),
            "{}",
            firing.description
        );
        assert!(
            firing
                .summary
                .starts_with("memory leak in release v2 on 127.0.0.1:9001"),
            "{}",
            firing.summary
        );
        let rate = firing.details["rate_mb_per_min"].as_f64().unwrap();
        assert!((8.0..12.0).contains(&rate), "rate {rate}");
        assert!(
            firing.summary.contains("MB/min")
                && firing.summary.contains("exhausts the 1024 MiB limit"),
            "{}",
            firing.summary
        );
        assert!(firing.details["exhaustion_in_s"].as_u64().unwrap() < 7200);
    }

    /// A young v2 instance (started at 0 s) leaking 200 KB/s, scraped every 5 s up
    /// to `until` s, with v1's start-up as its baseline or none.
    fn young_leak(baseline: Option<Baseline>, until: i64) -> (Engine, Vec<Transition>) {
        let mut engine = Engine::new(leak_rules());
        let mut seen = Vec::new();
        for s in (2..until).step_by(5) {
            let jitter = f64::from((s * 7919 % 13) as i32 - 6) * 170_000.0;
            let heap = 50e6 + 200e3 * s as f64 + jitter;
            let mut scrape = scrape(
                s,
                true,
                Memory {
                    rss: Some(heap + 20e6),
                    heap_allocated: Some(heap),
                    limit: None,
                },
                None,
            );
            scrape.samples.push(warden_store::Sample {
                name: compare::PROCESS_START.into(),
                labels: warden_store::Labels::new(),
                value: 0.0,
            });
            seen.extend(engine.evaluate(&[scrape]));
            if s == 2 {
                assert_eq!(engine.releases_to_compare(), ["v2"]);
                engine.set_baseline("v2", baseline.clone());
                assert!(engine.releases_to_compare().is_empty());
            }
        }
        (engine, seen)
    }

    #[test]
    fn a_young_release_leaking_faster_than_its_predecessor_fires_in_minutes() {
        let flat: Vec<(f64, f64)> = (0..120)
            .map(|k| {
                let age = 1.0 + 5.0 * f64::from(k);
                (age, 50e6 + 20e6 + f64::from((k * 31 % 7) - 3) * 200_000.0)
            })
            .collect();
        let baseline = Baseline {
            release: "v1".into(),
            heap: vec![flat.iter().map(|&(t, v)| (t, v - 20e6)).collect()],
            rss: vec![flat],
        };
        let (_, seen) = young_leak(Some(baseline), 300);
        let firing = seen
            .iter()
            .find(|t| t.alert == "MemoryLeak" && t.phase == Phase::Firing)
            .expect("the comparison fires");
        // settle 30 s + span 60 s, then its `for` of 30 s.
        assert!(
            (115_000..=135_000).contains(&firing.at_ms),
            "fired at {} ms",
            firing.at_ms
        );
        assert_eq!(firing.details["method"], "comparison");
        assert!(
            firing.description.contains("excess over v1 grows"),
            "{}",
            firing.description
        );
        assert_eq!(firing.details["compared_with"]["release"], "v1");
        assert_eq!(firing.labels["evidence"], "heap+rss");
        assert!(
            firing
                .summary
                .contains("faster than v1 did at the same age"),
            "{}",
            firing.summary
        );
        let rate = firing.details["rate_mb_per_min"].as_f64().unwrap();
        assert!((10.0..14.0).contains(&rate), "rate {rate}");
    }

    #[test]
    fn a_young_release_without_a_baseline_waits_for_the_detector() {
        let (_, seen) = young_leak(None, 590);
        assert!(
            seen.iter().all(|t| t.alert != "MemoryLeak"),
            "the detector needs a sixth of its window: {seen:?}"
        );
    }

    #[test]
    fn a_warm_up_plateau_does_not_fire() {
        let mut engine = Engine::new(leak_rules());
        let mut seen = Vec::new();
        for s in (0..3600).step_by(5) {
            let heap = 100e6 + 200e6 * (1.0 - (-(s as f64) / 120.0).exp());
            let memory = Memory {
                rss: Some(heap + 30e6),
                heap_allocated: Some(heap),
                limit: None,
            };
            seen.extend(engine.evaluate(&[scrape(s, true, memory, None)]));
        }
        assert!(
            phases(&seen, "MemoryLeak")
                .iter()
                .all(|p| *p != Phase::Firing),
            "{seen:?}"
        );
    }

    #[test]
    fn a_removed_instance_resolves_its_firing_alerts() {
        let mut engine = Engine::new(rules_without_leak());
        for s in 0..60 {
            engine.evaluate(&[scrape(s, false, Memory::default(), None)]);
        }
        assert_eq!(engine.active().len(), 1);
        let out = engine.evaluate(&[]);
        assert_eq!(phases(&out, "TargetDown"), [Phase::Resolved]);
        assert!(engine.active().is_empty());
    }

    #[test]
    fn config_errors_name_the_key() {
        let bad: Result<AlertRules, _> =
            toml::from_str("[error_ratio]\nthreshold = 0.05\nfor = \"2m\"\nclear = 1\n");
        assert!(bad.unwrap_err().to_string().contains("clear"));
        let rules: AlertRules =
            toml::from_str("[memory_high]\nthreshold = 1.5\nfor = \"1m\"\n").unwrap();
        assert!(rules.validate().unwrap_err().contains("memory_high"));
        let rules: AlertRules =
            toml::from_str("[leak]\nhorizon = \"4h\"\nmemory_limit = 1000000\n").unwrap();
        assert_eq!(rules.leak.rule.horizon, Duration::from_secs(4 * 3600));
        assert_eq!(rules.leak.memory_limit, Some(1_000_000));
        assert!(rules.validate().is_ok());
    }
}
