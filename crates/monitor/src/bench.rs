//! `warden bench detector`: Warden's leak detector and the canonical PromQL rule,
//! scored on the same labelled corpus of memory series.
//!
//! # The corpus
//!
//! A directory with a `manifest.json` and CSV files, one series each, `seconds,bytes`
//! per line (a header line and `#` comments are skipped; timestamps must increase):
//!
//! ```json
//! { "series": [
//!   { "file": "generated/leak-2-sawtooth-03.csv", "leak": true, "onset_s": 4215,
//!     "limit_bytes": 734003200, "rate_bytes_per_s": 34952.5,
//!     "shape": "leak on sawtooth", "source": "generated" },
//!   { "file": "recorded/clean-rss.csv", "leak": false, "onset_s": null,
//!     "limit_bytes": 536870912, "rate_bytes_per_s": null, "shape": "...", "source": "recorded" }
//! ] }
//! ```
//!
//! `onset_s` (same clock as the CSV) is required for a leak; `rate_bytes_per_s` (the
//! leak's mean rate, used to group delays) is estimated from the series after onset
//! when absent; `shape` and `source` are free text. Anyone can score their own series
//! with `--corpus DIR`. The committed corpus, `benches/detector-corpus`, holds series
//! recorded from the real API (`scripts/record-detector-corpus`) and a generated part
//! (`--generate DIR`, fixed seed, reproducible byte for byte) described in
//! [`generate_corpus`].
//!
//! # The detectors
//!
//! Both are evaluated at the same instants, every `--eval-interval` (15 s) along
//! each series, on the samples up to that instant only:
//!
//! - **Warden**: [`detector::assess`] on the rule's window, fed to a
//!   [`detector::LeakTracker`] (the rules engine's exact lifecycle), with the default
//!   rule except for the horizon (below). It fires when the tracker first reaches
//!   Firing.
//! - **PromQL**: `predict_linear(process_resident_memory_bytes[1h], 4*3600) > limit`
//!   with `for: 30m`, emulated as Prometheus computes it: at evaluation time `t`, an
//!   ordinary least-squares line through every sample in `(t − 1h, t]` (at least two),
//!   taken at `t` and extrapolated 4 h ahead; the alert goes pending at the first
//!   evaluation where that exceeds the limit, returns to inactive at any evaluation
//!   where it does not, and fires at the first evaluation at least 30 min after it
//!   went pending.
//!
//! **Fairness: the horizon.** The PromQL rule alerts when memory is forecast to reach
//! the limit within 4 h; Warden's default horizon is 2 h. A forecast-gated detector
//! fires only once exhaustion is inside its horizon, so with different horizons the
//! delays would compare horizons, not detectors. The benchmark therefore runs
//! Warden's detector with the same 4 h horizon (`--horizon`), measures delay from the
//! leak's onset, and the generated leaks are all forecast to exhaust memory within 4 h
//! of their onset, so both rules are entitled to fire from the onset on. The default
//! rule (2 h) is scored as well, for information only.
//!
//! # Scoring
//!
//! A detector fires on a series at the first instant it reaches Firing. On a leak
//! series, firing at or after the onset is a true positive with delay = fire − onset,
//! firing before the onset a false positive, never firing a false negative (every
//! generated leak ends when memory reaches the limit: the process is killed). On any
//! other series, firing is a false positive. Precision = TP / (TP + FP), recall =
//! TP / leak series. Delays are grouped by leak rate (MiB/min); a group's median
//! counts a missed leak as infinitely late, so a detector that misses more than half
//! of a group has no median ("never"). Goals: Warden's precision and recall ≥ 0.99,
//! and its median delay ≤ half the PromQL rule's at every leak rate.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use serde::{Deserialize, Serialize};
use warden_memtest::stats;

use crate::detector::{self, AlertState, LeakRule, LeakTracker};

/// Seed of the committed generated corpus.
pub const DEFAULT_SEED: u64 = 1105;

/// Options of `warden bench detector`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_long_help = "Exit status: 0 the goals were met; 1 they were not; 2 usage or \
    corpus error.\n\nExamples:\n  warden bench detector\n  \
    warden bench detector --corpus my-series/ --json | jq .detectors.warden\n  \
    warden bench detector --generate benches/detector-corpus"
)]
pub struct BenchDetectorArgs {
    /// Corpus directory: manifest.json naming CSV files (`seconds,bytes` per line)
    /// with each series' label (leak or not, leak onset, memory limit).
    #[arg(long, value_name = "DIR", default_value = "benches/detector-corpus")]
    pub corpus: PathBuf,
    /// Print one JSON document on stdout instead of the tables.
    #[arg(long)]
    pub json: bool,
    /// Write the generated part of a corpus into DIR (CSV files under
    /// DIR/generated and their entries in DIR/manifest.json, keeping entries that
    /// were not generated, such as recorded series) and exit.
    #[arg(long, value_name = "DIR")]
    pub generate: Option<PathBuf>,
    /// Seed for --generate.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub seed: u64,
    /// How often both detectors are evaluated along each series.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    pub eval_interval: Duration,
    /// Horizon of Warden's detector in the benchmark. 4h is the PromQL rule's
    /// `predict_linear(…, 4*3600)`, so both forecast equally far (production default: 2h).
    #[arg(long, value_name = "DURATION", default_value = "4h", value_parser = humantime::parse_duration)]
    pub horizon: Duration,
}

/// The corpus index.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub series: Vec<SeriesLabel>,
}

/// One series of the corpus and what is known about it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeriesLabel {
    /// CSV file, relative to the corpus directory.
    pub file: String,
    pub leak: bool,
    /// When the leak starts, on the CSV's clock. Required for a leak.
    #[serde(default)]
    pub onset_s: Option<f64>,
    /// The memory limit the detectors forecast against.
    pub limit_bytes: f64,
    /// Mean leak rate; estimated from the series when absent.
    #[serde(default)]
    pub rate_bytes_per_s: Option<f64>,
    #[serde(default)]
    pub shape: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
}

/// A loaded series.
struct Series {
    label: SeriesLabel,
    points: Vec<(f64, f64)>,
}

const MIB: f64 = 1_048_576.0;
const PROMQL_RANGE_S: f64 = 3600.0;
const PROMQL_PREDICT_S: f64 = 4.0 * 3600.0;
const PROMQL_FOR_S: f64 = 1800.0;

/// Which detectors are scored, in report order.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Detector {
    /// Warden's default rule with the benchmark's horizon: the one the goals are about.
    Warden,
    /// Warden's default rule as shipped (2 h horizon), for information.
    WardenDefault,
    PromQl,
}

const DETECTORS: [Detector; 3] = [Detector::Warden, Detector::WardenDefault, Detector::PromQl];

impl Detector {
    fn key(self) -> &'static str {
        match self {
            Self::Warden => "warden",
            Self::WardenDefault => "warden_default_horizon",
            Self::PromQl => "promql",
        }
    }
}

/// What one detector did on one series.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    fired_at: Option<f64>,
}

/// Scores of one detector.
#[derive(Debug, Clone, Serialize)]
pub struct DetectorScore {
    pub description: String,
    pub precision: f64,
    pub recall: f64,
    /// Median delay over all leak series (a miss counts as infinitely late); null
    /// when more than half were missed.
    pub median_delay_s: Option<f64>,
    pub true_positives: usize,
    pub false_positives: usize,
    pub false_negatives: usize,
    pub by_rate: Vec<RateScore>,
}

/// Delays of one detector on the leaks of one rate.
#[derive(Debug, Clone, Serialize)]
pub struct RateScore {
    pub rate_mib_per_min: f64,
    pub leaks: usize,
    pub detected: usize,
    pub median_delay_s: Option<f64>,
}

/// False positives on the series of one shape.
#[derive(Debug, Clone, Serialize)]
pub struct ShapeScore {
    pub shape: String,
    pub series: usize,
    /// Per detector.
    pub false_positives: BTreeMap<String, usize>,
}

/// Warden's median delay over PromQL's at one rate.
#[derive(Debug, Clone, Serialize)]
pub struct DelayRatio {
    pub rate_mib_per_min: f64,
    /// Null when neither detector has a median; 0 when only PromQL has none.
    pub ratio: Option<f64>,
}

/// Every recorded (not generated) series, one by one.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesResult {
    pub file: String,
    pub leak: bool,
    pub duration_s: f64,
    /// Seconds after onset (leaks) or after the start (others) when each detector
    /// fired, or null.
    pub fired_after_s: BTreeMap<String, Option<f64>>,
}

/// Whether the goals were met.
#[derive(Debug, Clone, Serialize)]
pub struct Goals {
    pub precision: bool,
    pub recall: bool,
    pub delay: bool,
    pub met: bool,
}

/// The whole report (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct DetectorBenchReport {
    pub corpus: String,
    pub series: usize,
    pub leak_series: usize,
    pub eval_interval_s: f64,
    pub fairness: String,
    pub detectors: BTreeMap<String, DetectorScore>,
    pub delay_ratio_by_rate: Vec<DelayRatio>,
    pub false_positives_by_shape: Vec<ShapeScore>,
    pub recorded: Vec<SeriesResult>,
    pub goals: Goals,
}

/// Runs `warden bench detector`: prints the report and returns whether the goals
/// were met (with `--generate`, writes the corpus and returns true).
pub fn run_detector_bench(args: &BenchDetectorArgs) -> anyhow::Result<bool> {
    ensure!(
        args.eval_interval >= Duration::from_secs(1),
        "--eval-interval must be at least 1s"
    );
    ensure!(!args.horizon.is_zero(), "--horizon must be positive");
    if let Some(dir) = &args.generate {
        let written = generate_corpus(dir, args.seed)?;
        eprintln!(
            "wrote {written} generated series and their manifest entries into {}",
            dir.display()
        );
        return Ok(true);
    }
    let corpus = load_corpus(&args.corpus)?;
    let report = score_corpus(&corpus, args);
    if args.json {
        warden_telemetry::outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        warden_telemetry::out!("{}", render_table(&report, args))?;
    }
    Ok(report.goals.met)
}

/// Reads a corpus directory: its manifest and every series it names.
fn load_corpus(dir: &Path) -> anyhow::Result<Vec<Series>> {
    let manifest_path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("cannot read {}", manifest_path.display()))?;
    let manifest: Manifest = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a corpus manifest", manifest_path.display()))?;
    ensure!(
        !manifest.series.is_empty(),
        "{} names no series",
        manifest_path.display()
    );
    manifest
        .series
        .into_iter()
        .map(|label| {
            let path = dir.join(&label.file);
            let points = read_csv(&path)?;
            let where_ = || format!("{} ({})", manifest_path.display(), label.file);
            ensure!(
                label.limit_bytes > 0.0 && label.limit_bytes.is_finite(),
                "{}: limit_bytes must be a positive number",
                where_()
            );
            if label.leak {
                ensure!(
                    label.onset_s.is_some_and(f64::is_finite),
                    "{}: a leak needs onset_s",
                    where_()
                );
            }
            Ok(Series { label, points })
        })
        .collect()
}

/// Parses `seconds,bytes` lines; skips blank lines, `#` comments and a header line.
fn read_csv(path: &Path) -> anyhow::Result<Vec<(f64, f64)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut points: Vec<(f64, f64)> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = line.split_once(',').and_then(|(t, b)| {
            Some((t.trim().parse::<f64>().ok()?, b.trim().parse::<f64>().ok()?))
        });
        let Some((t, bytes)) = parsed else {
            if points.is_empty() && index == 0 {
                continue; // a header
            }
            bail!(
                "{}:{}: expected `seconds,bytes`, got {line:?}",
                path.display(),
                index + 1
            );
        };
        ensure!(
            t.is_finite() && bytes.is_finite() && bytes >= 0.0,
            "{}:{}: not a time and a byte count: {line:?}",
            path.display(),
            index + 1
        );
        if let Some(&(previous, _)) = points.last() {
            ensure!(
                t > previous,
                "{}:{}: timestamps must increase ({t} after {previous})",
                path.display(),
                index + 1
            );
        }
        points.push((t, bytes));
    }
    ensure!(
        points.len() >= 2,
        "{}: fewer than 2 samples",
        path.display()
    );
    Ok(points)
}

/// Evaluates every detector on every series and scores them.
fn score_corpus(corpus: &[Series], args: &BenchDetectorArgs) -> DetectorBenchReport {
    let rules = BenchRules::new(args.horizon);
    let step = args.eval_interval.as_secs_f64();
    let outcomes = evaluate_all(corpus, &rules, step);

    let leaks: Vec<usize> = (0..corpus.len())
        .filter(|&i| corpus[i].label.leak)
        .collect();
    // Each leak's rate group, MiB/min to two significant digits.
    let rate_of: Vec<f64> = corpus
        .iter()
        .map(|series| {
            if !series.label.leak {
                return 0.0;
            }
            let rate = series
                .label
                .rate_bytes_per_s
                .unwrap_or_else(|| estimate_rate(series));
            round_significant(rate * 60.0 / MIB, 2)
        })
        .collect();
    let mut rates: Vec<f64> = leaks.iter().map(|&i| rate_of[i]).collect();
    rates.sort_by(f64::total_cmp);
    rates.dedup();

    let mut scores = Vec::new();
    for (d, detector) in DETECTORS.iter().enumerate() {
        let mut tp = 0;
        let mut fp = 0;
        let mut delays_by_rate: Vec<Vec<f64>> = vec![Vec::new(); rates.len()];
        let mut all_delays = Vec::new();
        for (i, series) in corpus.iter().enumerate() {
            let fired = outcomes[i][d].fired_at;
            let onset = series.label.onset_s.unwrap_or(f64::INFINITY);
            let delay = match (series.label.leak, fired) {
                (true, Some(at)) if at >= onset => {
                    tp += 1;
                    at - onset
                }
                (_, Some(_)) => {
                    fp += 1;
                    f64::INFINITY
                }
                (_, None) => f64::INFINITY,
            };
            if series.label.leak {
                let group = rates
                    .iter()
                    .position(|&r| r == rate_of[i])
                    .unwrap_or_default();
                delays_by_rate[group].push(delay);
                all_delays.push(delay);
            }
        }
        let by_rate: Vec<RateScore> = rates
            .iter()
            .zip(&delays_by_rate)
            .map(|(&rate, delays)| RateScore {
                rate_mib_per_min: rate,
                leaks: delays.len(),
                detected: delays.iter().filter(|d| d.is_finite()).count(),
                median_delay_s: finite(stats::median(&mut delays.clone())),
            })
            .collect();
        let score = DetectorScore {
            description: rules.describe(*detector),
            precision: if tp + fp == 0 {
                1.0
            } else {
                tp as f64 / (tp + fp) as f64
            },
            recall: if leaks.is_empty() {
                1.0
            } else {
                tp as f64 / leaks.len() as f64
            },
            median_delay_s: finite(stats::median(&mut all_delays)),
            true_positives: tp,
            false_positives: fp,
            false_negatives: leaks.len() - tp,
            by_rate,
        };
        scores.push(score);
    }

    let [warden, _, promql] = [&scores[0], &scores[1], &scores[2]];
    let delay_ratio_by_rate: Vec<DelayRatio> = warden
        .by_rate
        .iter()
        .zip(&promql.by_rate)
        .map(|(ours, theirs)| DelayRatio {
            rate_mib_per_min: ours.rate_mib_per_min,
            ratio: match (ours.median_delay_s, theirs.median_delay_s) {
                (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                (Some(_), None) => Some(0.0),
                _ => None,
            },
        })
        .collect();

    let mut shapes: Vec<String> = corpus
        .iter()
        .filter(|s| !s.label.leak)
        .map(|s| shape_name(&s.label))
        .collect();
    shapes.sort();
    shapes.dedup();
    let false_positives_by_shape = shapes
        .into_iter()
        .map(|shape| {
            let members: Vec<usize> = (0..corpus.len())
                .filter(|&i| !corpus[i].label.leak && shape_name(&corpus[i].label) == shape)
                .collect();
            let false_positives = DETECTORS
                .iter()
                .enumerate()
                .map(|(d, detector)| {
                    let count = members
                        .iter()
                        .filter(|&&i| outcomes[i][d].fired_at.is_some())
                        .count();
                    (detector.key().to_owned(), count)
                })
                .collect::<BTreeMap<_, _>>();
            ShapeScore {
                series: members.len(),
                shape,
                false_positives,
            }
        })
        .collect();

    let recorded = corpus
        .iter()
        .enumerate()
        .filter(|(_, s)| s.label.source.as_deref() == Some("recorded"))
        .map(|(i, s)| {
            let start = s.label.onset_s.unwrap_or(s.points[0].0);
            SeriesResult {
                file: s.label.file.clone(),
                leak: s.label.leak,
                duration_s: s.points[s.points.len() - 1].0 - s.points[0].0,
                fired_after_s: DETECTORS
                    .iter()
                    .enumerate()
                    .map(|(d, detector)| {
                        (
                            detector.key().to_owned(),
                            outcomes[i][d].fired_at.map(|at| at - start),
                        )
                    })
                    .collect(),
            }
        })
        .collect();

    let precision = warden.precision >= 0.99;
    let recall = warden.recall >= 0.99;
    let delay = delay_ratio_by_rate
        .iter()
        .all(|r| r.ratio.is_some_and(|ratio| ratio <= 0.5));
    DetectorBenchReport {
        corpus: args.corpus.display().to_string(),
        series: corpus.len(),
        leak_series: leaks.len(),
        eval_interval_s: step,
        fairness: format!(
            "Warden's detector runs with a {} horizon, the PromQL rule's predict_linear 4h; \
             delay counts from the leak's onset",
            humantime::format_duration(args.horizon)
        ),
        detectors: DETECTORS
            .iter()
            .map(|d| d.key().to_owned())
            .zip(scores)
            .collect(),
        delay_ratio_by_rate,
        false_positives_by_shape,
        recorded,
        goals: Goals {
            precision,
            recall,
            delay,
            met: precision && recall && delay,
        },
    }
}

/// The rules of the two Warden detectors.
struct BenchRules {
    warden: LeakRule,
    default: LeakRule,
}

impl BenchRules {
    fn new(horizon: Duration) -> Self {
        let default = LeakRule::default();
        Self {
            warden: LeakRule {
                horizon,
                ..default.clone()
            },
            default,
        }
    }

    fn describe(&self, detector: Detector) -> String {
        let warden = |rule: &LeakRule| {
            format!(
                "Warden's detector: window {}, for {}, significance {}, min rate {} B/s, horizon {}",
                humantime::format_duration(rule.window),
                humantime::format_duration(rule.for_),
                rule.significance,
                rule.min_rate_bytes_per_s,
                humantime::format_duration(rule.horizon),
            )
        };
        match detector {
            Detector::Warden => warden(&self.warden),
            Detector::WardenDefault => warden(&self.default),
            Detector::PromQl => {
                "predict_linear(process_resident_memory_bytes[1h], 4*3600) > limit, for: 30m"
                    .to_owned()
            }
        }
    }
}

/// Outcomes per series and detector, series spread over the available cores.
fn evaluate_all(corpus: &[Series], rules: &BenchRules, step: f64) -> Vec<[Outcome; 3]> {
    let threads = std::thread::available_parallelism()
        .map(std::num::NonZero::get)
        .unwrap_or(1)
        .min(corpus.len().max(1));
    let mut outcomes = vec![[Outcome { fired_at: None }; 3]; corpus.len()];
    std::thread::scope(|scope| {
        for (t, chunk) in outcomes
            .chunks_mut(corpus.len().div_ceil(threads))
            .enumerate()
        {
            let first = t * corpus.len().div_ceil(threads);
            scope.spawn(move || {
                for (offset, slot) in chunk.iter_mut().enumerate() {
                    *slot = evaluate(&corpus[first + offset], rules, step);
                }
            });
        }
    });
    outcomes
}

/// Runs every detector along one series.
fn evaluate(series: &Series, rules: &BenchRules, step: f64) -> [Outcome; 3] {
    let points = &series.points;
    let limit = series.label.limit_bytes;
    let (start, end) = (points[0].0, points[points.len() - 1].0);
    let mut warden = WardenRun::new(&rules.warden);
    let mut default = WardenRun::new(&rules.default);
    let mut promql = PromQlRule::default();
    let mut k = 1.0;
    loop {
        let now = start + k * step;
        if now > end {
            break;
        }
        k += 1.0;
        let upto = points.partition_point(|&(t, _)| t <= now);
        let seen = &points[..upto];
        warden.evaluate(seen, now, limit);
        default.evaluate(seen, now, limit);
        promql.evaluate(seen, now, limit);
        if warden.fired_at.is_some() && default.fired_at.is_some() && promql.fired_at.is_some() {
            break;
        }
    }
    [
        Outcome {
            fired_at: warden.fired_at,
        },
        Outcome {
            fired_at: default.fired_at,
        },
        Outcome {
            fired_at: promql.fired_at,
        },
    ]
}

/// Warden's detector and tracker along one series.
struct WardenRun<'a> {
    rule: &'a LeakRule,
    tracker: LeakTracker,
    fired_at: Option<f64>,
}

impl<'a> WardenRun<'a> {
    fn new(rule: &'a LeakRule) -> Self {
        Self {
            rule,
            tracker: LeakTracker::new(rule),
            fired_at: None,
        }
    }

    fn evaluate(&mut self, seen: &[(f64, f64)], now: f64, limit: f64) {
        if self.fired_at.is_some() {
            return;
        }
        let from = seen.partition_point(|&(t, _)| t < now - self.rule.window.as_secs_f64());
        let assessment = detector::assess(&seen[from..], limit, self.rule);
        if let AlertState::Firing { since } = self.tracker.observe(now, &assessment) {
            self.fired_at = Some(since);
        }
    }
}

/// `predict_linear(v[1h], 4*3600) > limit` with `for: 30m`, as Prometheus evaluates it.
#[derive(Default)]
struct PromQlRule {
    pending_since: Option<f64>,
    fired_at: Option<f64>,
}

impl PromQlRule {
    fn evaluate(&mut self, seen: &[(f64, f64)], now: f64, limit: f64) {
        if self.fired_at.is_some() {
            return;
        }
        let from = seen.partition_point(|&(t, _)| t <= now - PROMQL_RANGE_S);
        let condition =
            predict_linear(&seen[from..], now, PROMQL_PREDICT_S).is_some_and(|v| v > limit);
        if !condition {
            self.pending_since = None;
            return;
        }
        let since = *self.pending_since.get_or_insert(now);
        if now - since >= PROMQL_FOR_S {
            self.fired_at = Some(now);
        }
    }
}

/// Prometheus' `predict_linear`: the least-squares line through `samples`, with time
/// measured from the evaluation instant `now`, taken `ahead` seconds after `now`.
fn predict_linear(samples: &[(f64, f64)], now: f64, ahead: f64) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let n = samples.len() as f64;
    let (mut sx, mut sy, mut sxx, mut sxy) = (0.0, 0.0, 0.0, 0.0);
    for &(t, y) in samples {
        let x = t - now;
        sx += x;
        sy += y;
        sxx += x * x;
        sxy += x * y;
    }
    let cov = sxy - sx * sy / n;
    let var = sxx - sx * sx / n;
    if var == 0.0 {
        return None;
    }
    let slope = cov / var;
    let intercept = sy / n - slope * sx / n;
    Some(intercept + slope * ahead)
}

/// A leak's mean rate when the manifest does not give it: Theil–Sen on up to 200
/// samples after the onset.
fn estimate_rate(series: &Series) -> f64 {
    let onset = series.label.onset_s.unwrap_or(f64::NEG_INFINITY);
    let after: Vec<(f64, f64)> = series
        .points
        .iter()
        .copied()
        .filter(|&(t, _)| t >= onset)
        .collect();
    let every = after.len().div_ceil(200).max(1);
    let sample: Vec<(f64, f64)> = after.iter().copied().step_by(every).collect();
    stats::trend(&sample, 0.95).map_or(0.0, |t| t.slope)
}

fn round_significant(value: f64, digits: i32) -> f64 {
    if value == 0.0 || !value.is_finite() {
        return value;
    }
    let scale = 10f64.powi(digits - 1 - value.abs().log10().floor() as i32);
    (value * scale).round() / scale
}

fn finite(value: f64) -> Option<f64> {
    value.is_finite().then_some(value)
}

fn shape_name(label: &SeriesLabel) -> String {
    match label.source.as_deref() {
        Some("recorded") => "recorded".to_owned(),
        _ => label
            .shape
            .clone()
            .unwrap_or_else(|| "unlabelled".to_owned()),
    }
}

fn format_delay(seconds: Option<f64>) -> String {
    match seconds {
        None => "never".to_owned(),
        Some(s) => {
            let s = s.round() as u64;
            if s >= 3600 {
                format!("{}h{:02}m", s / 3600, s % 3600 / 60)
            } else {
                format!("{}m{:02}s", s / 60, s % 60)
            }
        }
    }
}

fn render_table(report: &DetectorBenchReport, args: &BenchDetectorArgs) -> String {
    let scores: Vec<(&str, &DetectorScore)> = DETECTORS
        .iter()
        .filter_map(|d| Some((d.key(), report.detectors.get(d.key())?)))
        .collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "warden bench detector: {} series in {} ({} leaking), both detectors evaluated every {}",
        report.series,
        report.corpus,
        report.leak_series,
        humantime::format_duration(args.eval_interval),
    );
    let _ = writeln!(out, "Fairness: {}.\n", report.fairness);
    for (key, s) in &scores {
        let _ = writeln!(out, "  {key:<24} {}", s.description);
    }

    let _ = writeln!(
        out,
        "\n| detector | precision | recall | TP | FP | FN | median delay |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    for (key, s) in &scores {
        let _ = writeln!(
            out,
            "| {key} | {:.3} | {:.3} | {} | {} | {} | {} |",
            s.precision,
            s.recall,
            s.true_positives,
            s.false_positives,
            s.false_negatives,
            format_delay(s.median_delay_s)
        );
    }

    let _ = writeln!(
        out,
        "\nMedian detection delay after onset, by leak rate (a missed leak counts as never):\n"
    );
    let mut header = "| leak rate (MiB/min) | leaks |".to_owned();
    let mut rule = "|---:|---:|".to_owned();
    for (key, _) in &scores {
        let _ = write!(header, " {key} detected | {key} median |");
        rule.push_str("---:|---:|");
    }
    let _ = writeln!(out, "{header} warden / promql |\n{rule}---:|");
    for (row, ratio) in report.delay_ratio_by_rate.iter().enumerate() {
        let Some(leaks) = scores
            .first()
            .and_then(|(_, s)| s.by_rate.get(row))
            .map(|r| r.leaks)
        else {
            continue;
        };
        let _ = write!(out, "| {} | {leaks} |", ratio.rate_mib_per_min);
        for (_, s) in &scores {
            if let Some(r) = s.by_rate.get(row) {
                let _ = write!(
                    out,
                    " {}/{} | {} |",
                    r.detected,
                    r.leaks,
                    format_delay(r.median_delay_s)
                );
            }
        }
        let ratio = ratio.ratio.map_or("–".to_owned(), |r| format!("{r:.2}"));
        let _ = writeln!(out, " {ratio} |");
    }

    let _ = writeln!(
        out,
        "\nFalse positives on series without a leak, by shape:\n"
    );
    let mut header = "| shape | series |".to_owned();
    let mut rule = "|---|---:|".to_owned();
    for (key, _) in &scores {
        let _ = write!(header, " {key} |");
        rule.push_str("---:|");
    }
    let _ = writeln!(out, "{header}\n{rule}");
    for shape in &report.false_positives_by_shape {
        let _ = write!(out, "| {} | {} |", shape.shape, shape.series);
        for (key, _) in &scores {
            let count = shape.false_positives.get(*key).copied().unwrap_or_default();
            let _ = write!(out, " {count} |");
        }
        out.push('\n');
    }

    if !report.recorded.is_empty() {
        let _ = writeln!(
            out,
            "\nRecorded series (when each detector fired, after the onset for a leak, after the \
             start otherwise):\n"
        );
        let mut header = "| series | leak | length |".to_owned();
        let mut rule = "|---|---|---:|".to_owned();
        for (key, _) in &scores {
            let _ = write!(header, " {key} |");
            rule.push_str("---:|");
        }
        let _ = writeln!(out, "{header}\n{rule}");
        for series in &report.recorded {
            let _ = write!(
                out,
                "| {} | {} | {} |",
                series.file,
                if series.leak { "yes" } else { "no" },
                format_delay(Some(series.duration_s))
            );
            for (key, _) in &scores {
                let fired = series.fired_after_s.get(*key).copied().flatten();
                let _ = write!(out, " {} |", format_delay(fired));
            }
            out.push('\n');
        }
    }

    let worst = report
        .delay_ratio_by_rate
        .iter()
        .filter_map(|r| r.ratio.map(|ratio| (ratio, r.rate_mib_per_min)))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    let _ = writeln!(
        out,
        "\nGoals (warden): precision >= 0.99 {}; recall >= 0.99 {}; median delay <= 1/2 of \
         PromQL's at every leak rate {}{}.",
        met(report.goals.precision),
        met(report.goals.recall),
        met(report.goals.delay),
        worst.map_or(String::new(), |(ratio, rate)| format!(
            " (largest ratio {ratio:.2}, at {rate} MiB/min)"
        )),
    );
    out
}

// ---------------------------------------------------------------------------------
// The generated corpus
// ---------------------------------------------------------------------------------

/// Leak rates of the generated leaks, MiB per minute.
const LEAK_RATES: [f64; 7] = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0];
/// Generated series per leak rate and per non-leak shape.
const PER_GROUP: usize = 18;
/// Sampling interval of the generated series (a common Prometheus scrape interval).
const STEP_S: f64 = 15.0;
/// Length of a generated series without a leak.
const CLEAN_LENGTH_S: f64 = 4.0 * 3600.0;

/// Writes the generated part of a corpus into `dir` and returns how many series.
///
/// Every series is a process of base size B (150–600 MiB) sampled every 15 s, with
/// the noise production memory has: upward jitter from in-flight requests (0.2–1.5 %
/// of B, half-normal) plus a little symmetric noise, load-driven wander (an
/// Ornstein–Uhlenbeck process, up to 1 % of B, time constant 3–15 min), the daily
/// traffic swing (up to 4 % of B, period 20–28 h), rare one-sample spikes (3–10 %),
/// and RSS's 4 KiB page granularity. The noise is given for a 300 MiB process; it
/// grows with the square root of B. On top of that, one shape:
///
/// - without a leak (18 each, 4 h): `steady`; `sawtooth` (GC/allocator teeth of
///   1–5 min, 5–30 % of B, each tooth ±20 % in length and ±15 % in height);
///   `warm-up` (from 30–80 % of B to B, time constant 0.5–5 min); `cache fill` (a
///   cache of 10–40 % of B filling at a slowing pace, time constant 1–6 min, at a
///   random time); `step` (a one-off rise of 5–25 % of B); `restart` (1–3 restarts:
///   memory drops to 30–70 % of B and warms up again); `busy` (three times the
///   jitter, twice the wander, five times the spikes). The limit is 10–80 % above
///   the series' highest sample.
/// - leaks (18 per rate of 0.25, 0.5, 1, 2, 4, 8, 16 MiB/min): after an onset at
///   45–90 min the floor grows at the rate, modulated ±0–40 % with traffic over 1–3 h,
///   on one of six backgrounds in turn: steady, sawtooth, warm-up at the start, busy,
///   a step before the onset, a restart before the onset. Each runs out of memory 1
///   to 3.75 h after its onset (within both rules' 4 h forecast): the series ends
///   there, and its limit is the highest sample of its last five minutes. The limit
///   is 10–60 % above the process's size at the onset (B is chosen to make it so,
///   within 64 MiB–4 GiB): slow leaks live in small processes, fast ones in big ones.
pub fn generate_corpus(dir: &Path, seed: u64) -> anyhow::Result<usize> {
    let generated = dir.join("generated");
    if generated.exists() {
        std::fs::remove_dir_all(&generated)
            .with_context(|| format!("cannot clear {}", generated.display()))?;
    }
    std::fs::create_dir_all(&generated)
        .with_context(|| format!("cannot create {}", generated.display()))?;
    let manifest_path = dir.join("manifest.json");
    let mut manifest = match std::fs::read_to_string(&manifest_path) {
        Ok(text) => serde_json::from_str::<Manifest>(&text)
            .with_context(|| format!("{} is not a corpus manifest", manifest_path.display()))?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Manifest::default(),
        Err(error) => {
            return Err(error).with_context(|| format!("cannot read {}", manifest_path.display()));
        }
    };
    manifest
        .series
        .retain(|s| s.source.as_deref() != Some("generated"));
    manifest.description = Some(
        "Labelled memory series for `warden bench detector`: each entry names a CSV file \
         (`seconds,bytes` per line), whether it leaks, the leak's onset (seconds, same clock) \
         and mean rate, and the memory limit. `generated/` is written by \
         `warden bench detector --generate DIR` (seed 1105); `recorded/` by \
         scripts/record-detector-corpus."
            .to_owned(),
    );

    let mut rng = Rng(seed);
    let mut written = 0;
    for shape in CleanShape::ALL {
        for n in 1..=PER_GROUP {
            let (points, limit) = clean_series(&mut rng, shape);
            let file = format!("generated/{}-{n:02}.csv", shape.slug());
            write_csv(&dir.join(&file), &points)?;
            manifest.series.push(SeriesLabel {
                file,
                leak: false,
                onset_s: None,
                limit_bytes: limit,
                rate_bytes_per_s: None,
                shape: Some(shape.name().to_owned()),
                source: Some("generated".to_owned()),
            });
            written += 1;
        }
    }
    for rate in LEAK_RATES {
        for n in 1..=PER_GROUP {
            let background = LeakBackground::ALL[(n - 1) % LeakBackground::ALL.len()];
            let series = leak_series(&mut rng, rate, background);
            let file = format!("generated/leak-{rate}-{}-{n:02}.csv", background.slug());
            write_csv(&dir.join(&file), &series.points)?;
            manifest.series.push(SeriesLabel {
                file,
                leak: true,
                onset_s: Some(series.onset),
                limit_bytes: series.limit,
                rate_bytes_per_s: Some(rate * MIB / 60.0),
                shape: Some(format!("leak on {}", background.name())),
                source: Some("generated".to_owned()),
            });
            written += 1;
        }
    }
    let text = serde_json::to_string_pretty(&manifest)?;
    std::fs::write(&manifest_path, text + "\n")
        .with_context(|| format!("cannot write {}", manifest_path.display()))?;
    Ok(written)
}

fn write_csv(path: &Path, points: &[(f64, f64)]) -> anyhow::Result<()> {
    let mut text = String::with_capacity(points.len() * 16);
    for &(t, bytes) in points {
        let _ = writeln!(text, "{t},{bytes}");
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum CleanShape {
    Steady,
    Sawtooth,
    WarmUp,
    CacheFill,
    Step,
    Restart,
    Busy,
}

impl CleanShape {
    const ALL: [Self; 7] = [
        Self::Steady,
        Self::Sawtooth,
        Self::WarmUp,
        Self::CacheFill,
        Self::Step,
        Self::Restart,
        Self::Busy,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Steady => "steady",
            Self::Sawtooth => "sawtooth",
            Self::WarmUp => "warm-up",
            Self::CacheFill => "cache fill",
            Self::Step => "step",
            Self::Restart => "restart",
            Self::Busy => "busy",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Self::CacheFill => "cache-fill",
            other => other.name(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum LeakBackground {
    Steady,
    Sawtooth,
    WarmUp,
    Busy,
    Step,
    Restart,
}

impl LeakBackground {
    const ALL: [Self; 6] = [
        Self::Steady,
        Self::Sawtooth,
        Self::WarmUp,
        Self::Busy,
        Self::Step,
        Self::Restart,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Steady => "steady",
            Self::Sawtooth => "sawtooth",
            Self::WarmUp => "warm-up",
            Self::Busy => "busy",
            Self::Step => "step",
            Self::Restart => "restart",
        }
    }

    fn slug(self) -> &'static str {
        self.name()
    }
}

/// SplitMix64: tiny, and its output never changes, so `--generate` reproduces the
/// committed corpus byte for byte whatever the versions of dependencies.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn range(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }

    fn log_range(&mut self, low: f64, high: f64) -> f64 {
        (low.ln() + (high.ln() - low.ln()) * self.unit()).exp()
    }

    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let u = 1.0 - self.unit(); // (0, 1]
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// GC or allocator teeth: a linear rise from 0 to the tooth's height, then a drop.
struct Sawtooth {
    /// (start, length, height) of each tooth.
    teeth: Vec<(f64, f64, f64)>,
}

impl Sawtooth {
    fn random(rng: &mut Rng, base: f64, until: f64) -> Self {
        let period = rng.range(60.0, 300.0);
        let height = base * rng.range(0.05, 0.30);
        let mut teeth = Vec::new();
        let mut start = -rng.range(0.0, period);
        while start < until {
            let length = period * rng.range(0.8, 1.2);
            teeth.push((start, length, height * rng.range(0.85, 1.15)));
            start += length;
        }
        Self { teeth }
    }

    fn at(&self, t: f64) -> f64 {
        let i = self.teeth.partition_point(|&(start, _, _)| start <= t);
        match i.checked_sub(1).and_then(|i| self.teeth.get(i)) {
            Some(&(start, length, height)) => height * ((t - start) / length).min(1.0),
            None => 0.0,
        }
    }
}

/// The noise every generated series has, and an optional sawtooth.
struct Background {
    base: f64,
    /// The scale of the noise: `base` for a 300 MiB process, `sqrt(base × 300 MiB)`.
    noise: f64,
    jitter: f64,
    wander_sd: f64,
    wander_tau: f64,
    daily: f64,
    daily_period: f64,
    daily_phase: f64,
    spike_chance: f64,
    sawtooth: Option<Sawtooth>,
}

impl Background {
    /// A random background around `base` bytes (random when `None`).
    fn random(rng: &mut Rng, base: Option<f64>, busy: bool) -> Self {
        let base = base.unwrap_or_else(|| rng.log_range(150.0, 600.0) * MIB);
        let (jitter, wander, spikes) = if busy {
            (3.0, 2.0, 5.0)
        } else {
            (1.0, 1.0, 1.0)
        };
        // Noise grows with the process, but slower: a process ten times bigger serves
        // more load, not ten times the jitter. At 300 MiB, jitter is 0.2–1.5 %.
        let noise = (base * 300.0 * MIB).sqrt();
        Self {
            base,
            noise,
            jitter: noise * rng.log_range(0.002, 0.015) * jitter,
            wander_sd: noise * rng.range(0.0, 0.01) * wander,
            wander_tau: rng.range(180.0, 900.0),
            daily: noise * rng.range(0.0, 0.04),
            daily_period: rng.range(20.0, 28.0) * 3600.0,
            daily_phase: rng.range(0.0, std::f64::consts::TAU),
            spike_chance: 0.002 * spikes,
            sawtooth: None,
        }
    }

    /// Samples `base + shape(t) + noise` every 15 s over `[0, length)`, rounded to
    /// 4 KiB pages.
    fn render(&self, rng: &mut Rng, length: f64, shape: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
        let decay = (-STEP_S / self.wander_tau).exp();
        let kick = self.wander_sd * (1.0 - decay * decay).sqrt();
        let mut wander = self.wander_sd * rng.normal();
        let mut points = Vec::new();
        let mut t = 0.0;
        while t < length {
            wander = wander * decay + kick * rng.normal();
            let daily = self.daily
                * (std::f64::consts::TAU * t / self.daily_period + self.daily_phase).sin();
            let jitter = self.jitter * (rng.normal().abs() + 0.3 * rng.normal());
            let spike = if rng.unit() < self.spike_chance {
                self.noise * rng.range(0.03, 0.10)
            } else {
                0.0
            };
            let teeth = self.sawtooth.as_ref().map_or(0.0, |s| s.at(t));
            let bytes = (self.base + shape(t) + wander + daily + jitter + spike + teeth).max(MIB);
            points.push((t, (bytes / 4096.0).round() * 4096.0));
            t += STEP_S;
        }
        points
    }
}

/// A warm-up from `from × base` towards `base` with time constant `tau`, starting at
/// `at`: the (negative) offset from `base`.
fn warm_up(t: f64, at: f64, base: f64, from: f64, tau: f64) -> f64 {
    if t < at {
        0.0
    } else {
        -base * (1.0 - from) * (-(t - at) / tau).exp()
    }
}

fn clean_series(rng: &mut Rng, shape: CleanShape) -> (Vec<(f64, f64)>, f64) {
    let mut bg = Background::random(rng, None, shape == CleanShape::Busy);
    let base = bg.base;
    let length = CLEAN_LENGTH_S;
    let points = match shape {
        CleanShape::Steady | CleanShape::Busy => bg.render(rng, length, |_| 0.0),
        CleanShape::Sawtooth => {
            bg.sawtooth = Some(Sawtooth::random(rng, base, length));
            bg.render(rng, length, |_| 0.0)
        }
        CleanShape::WarmUp => {
            let (from, tau) = (rng.range(0.3, 0.8), rng.range(30.0, 300.0));
            bg.render(rng, length, |t| warm_up(t, 0.0, base, from, tau))
        }
        CleanShape::CacheFill => {
            let at = rng.range(1200.0, length - 3600.0);
            let (size, tau) = (base * rng.range(0.1, 0.4), rng.range(60.0, 360.0));
            bg.render(rng, length, move |t| {
                if t < at {
                    0.0
                } else {
                    size * (1.0 - (-(t - at) / tau).exp())
                }
            })
        }
        CleanShape::Step => {
            let at = rng.range(1200.0, length - 2400.0);
            let size = base * rng.range(0.05, 0.25);
            bg.render(rng, length, move |t| if t < at { 0.0 } else { size })
        }
        CleanShape::Restart => {
            let count = 1 + (rng.unit() * 3.0) as usize;
            let mut restarts: Vec<(f64, f64, f64)> = Vec::new();
            let mut at = rng.range(1200.0, 3600.0);
            for _ in 0..count {
                restarts.push((at, rng.range(0.3, 0.7), rng.range(30.0, 300.0)));
                at += rng.range(2400.0, 4800.0);
            }
            bg.render(rng, length, move |t| {
                restarts
                    .iter()
                    .rev()
                    .find(|&&(at, _, _)| at <= t)
                    .map_or(0.0, |&(at, from, tau)| warm_up(t, at, base, from, tau))
            })
        }
    };
    let highest = points.iter().map(|&(_, b)| b).fold(0.0, f64::max);
    let limit = (highest * (1.0 + rng.log_range(0.1, 0.8)) / 4096.0).round() * 4096.0;
    (points, limit)
}

struct LeakSeries {
    points: Vec<(f64, f64)>,
    onset: f64,
    limit: f64,
}

fn leak_series(rng: &mut Rng, rate_mib_per_min: f64, background: LeakBackground) -> LeakSeries {
    let onset = (rng.range(2700.0, 5400.0) / STEP_S).round() * STEP_S;
    let exhaust_after = rng.range(3600.0, 3.75 * 3600.0);
    let rate = rate_mib_per_min * MIB / 60.0;
    // The limit is 10–60 % above the peaks at the onset: the process size follows.
    let headroom = rng.log_range(0.1, 0.6);
    let base = (rate * exhaust_after / headroom).clamp(64.0 * MIB, 4096.0 * MIB);
    let mut bg = Background::random(rng, Some(base), background == LeakBackground::Busy);
    let (swing, swing_period, swing_phase) = (
        rng.range(0.0, 0.4),
        rng.range(3600.0, 3.0 * 3600.0),
        rng.range(0.0, std::f64::consts::TAU),
    );
    // The leak's growth since onset: rate × elapsed, modulated by traffic.
    let leaked = move |t: f64| {
        if t < onset {
            return 0.0;
        }
        let w = std::f64::consts::TAU / swing_period;
        rate * ((t - onset)
            - swing / w * ((w * t + swing_phase).cos() - (w * onset + swing_phase).cos()))
    };
    let length = onset + exhaust_after;
    let points = match background {
        LeakBackground::Steady | LeakBackground::Busy => bg.render(rng, length, leaked),
        LeakBackground::Sawtooth => {
            bg.sawtooth = Some(Sawtooth::random(rng, base, length));
            bg.render(rng, length, leaked)
        }
        LeakBackground::WarmUp => {
            let (from, tau) = (rng.range(0.3, 0.8), rng.range(30.0, 300.0));
            bg.render(rng, length, move |t| {
                warm_up(t, 0.0, base, from, tau) + leaked(t)
            })
        }
        LeakBackground::Step => {
            let at = rng.range(900.0, onset - 900.0);
            let size = base * rng.range(0.05, 0.25);
            bg.render(rng, length, move |t| {
                leaked(t) + if t < at { 0.0 } else { size }
            })
        }
        LeakBackground::Restart => {
            let at = rng.range(900.0, onset - 900.0);
            let (from, tau) = (rng.range(0.3, 0.7), rng.range(30.0, 300.0));
            bg.render(rng, length, move |t| {
                warm_up(t, at, base, from, tau) + leaked(t)
            })
        }
    };
    // The process dies at the end: the limit is the highest memory of its last minutes.
    let limit = points
        .iter()
        .filter(|&&(t, _)| t >= length - 300.0)
        .map(|&(_, b)| b)
        .fold(0.0, f64::max);
    LeakSeries {
        points,
        onset,
        limit,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn committed_corpus() -> PathBuf {
        std::env::var_os("BENCH_CORPUS").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../benches/detector-corpus"),
            PathBuf::from,
        )
    }

    fn args(corpus: PathBuf) -> BenchDetectorArgs {
        BenchDetectorArgs {
            corpus,
            json: std::env::var_os("BENCH_JSON").is_some(),
            generate: None,
            seed: DEFAULT_SEED,
            eval_interval: Duration::from_secs(15),
            horizon: Duration::from_secs(4 * 3600),
        }
    }

    #[test]
    fn predict_linear_extrapolates_the_least_squares_line_from_now() {
        // y = 1000 + 2 (t - 100), sampled at 40..=100, evaluated at 100.
        let samples: Vec<(f64, f64)> = (40..=100)
            .step_by(15)
            .map(|t| (f64::from(t), 1000.0 + 2.0 * (f64::from(t) - 100.0)))
            .collect();
        let v = predict_linear(&samples, 100.0, 50.0).unwrap();
        assert!((v - 1100.0).abs() < 1e-9, "{v}");
        // Noise around a flat line averages out; one sample is not enough.
        let flat = [(0.0, 10.0), (1.0, 12.0), (2.0, 10.0), (3.0, 12.0)];
        let v = predict_linear(&flat, 3.0, 0.0).unwrap();
        assert!((v - 11.6).abs() < 1e-9, "{v}");
        assert_eq!(predict_linear(&[(0.0, 1.0)], 0.0, 10.0), None);
    }

    #[test]
    fn the_promql_rule_fires_thirty_minutes_after_its_condition_first_holds() {
        let mut rule = PromQlRule::default();
        let samples: Vec<(f64, f64)> = (0..400)
            .map(|i| (f64::from(i) * 15.0, f64::from(i)))
            .collect();
        for i in 1..400 {
            let now = f64::from(i) * 15.0;
            rule.evaluate(&samples[..=i as usize], now, 100.0);
        }
        // Condition: i + 960 > 100 from the first evaluation with two samples (15 s).
        assert_eq!(rule.fired_at, Some(15.0 + 1800.0));
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn a_csv_may_have_a_header_and_comments_but_no_disorder() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.csv");
        write(&good, "seconds,bytes\n# a comment\n0,100\n\n15,110.5\n");
        assert_eq!(read_csv(&good).unwrap(), vec![(0.0, 100.0), (15.0, 110.5)]);
        let unsorted = dir.path().join("unsorted.csv");
        write(&unsorted, "0,100\n15,110\n15,120\n");
        let error = read_csv(&unsorted).unwrap_err().to_string();
        assert!(
            error.contains("unsorted.csv:3") && error.contains("increase"),
            "{error}"
        );
        let garbage = dir.path().join("garbage.csv");
        write(&garbage, "0,100\nfifteen,110\n");
        let error = read_csv(&garbage).unwrap_err().to_string();
        assert!(error.contains("garbage.csv:2"), "{error}");
    }

    #[test]
    fn a_leak_without_an_onset_is_a_manifest_error() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("a.csv"), "0,1\n15,2\n");
        write(
            &dir.path().join("manifest.json"),
            r#"{"series":[{"file":"a.csv","leak":true,"limit_bytes":100}]}"#,
        );
        let error = load_corpus(dir.path()).err().unwrap().to_string();
        assert!(error.contains("onset_s"), "{error}");
    }

    /// A corpus of one fast leak and one flat series, three hours each.
    fn tiny_corpus(dir: &Path) {
        let mib = MIB;
        let mut leak = String::new();
        let mut flat = String::new();
        for i in 0..720 {
            let t = f64::from(i) * 15.0;
            let jitter = f64::from(i * 7919 % 13) * 0.2 * mib;
            let leaked = if t < 3600.0 {
                0.0
            } else {
                4.0 * mib * (t - 3600.0) / 60.0
            };
            let _ = writeln!(leak, "{t},{}", 300.0 * mib + jitter + leaked);
            let _ = writeln!(flat, "{t},{}", 300.0 * mib + jitter);
        }
        write(&dir.join("leak.csv"), &leak);
        write(&dir.join("flat.csv"), &flat);
        let manifest = serde_json::json!({"series": [
            {"file": "leak.csv", "leak": true, "onset_s": 3600.0, "limit_bytes": 1000.0 * mib,
             "rate_bytes_per_s": 4.0 * mib / 60.0, "shape": "leak"},
            {"file": "flat.csv", "leak": false, "limit_bytes": 400.0 * mib, "shape": "flat"},
        ]});
        write(&dir.join("manifest.json"), &manifest.to_string());
    }

    #[test]
    fn a_tiny_corpus_is_scored_for_both_detectors() {
        let dir = tempfile::tempdir().unwrap();
        tiny_corpus(dir.path());
        let corpus = load_corpus(dir.path()).unwrap();
        let report = score_corpus(&corpus, &args(dir.path().to_owned()));
        let warden = &report.detectors["warden"];
        assert_eq!(
            (warden.true_positives, warden.false_positives),
            (1, 0),
            "{warden:?}"
        );
        assert_eq!(warden.precision, 1.0);
        assert_eq!(warden.recall, 1.0);
        let delay = warden.median_delay_s.unwrap();
        assert!(delay < 20.0 * 60.0, "{delay}");
        assert_eq!(warden.by_rate[0].rate_mib_per_min, 4.0);
        let promql = &report.detectors["promql"];
        assert!(promql.median_delay_s.unwrap() > 30.0 * 60.0, "{promql:?}");
        assert!(report.goals.met, "{report:?}");
        let json = serde_json::to_value(&report).unwrap();
        assert!(json["detectors"]["promql"]["precision"].is_number());
        assert!(json["detectors"]["warden"]["median_delay_s"].is_number());
        let table = render_table(&report, &args(dir.path().to_owned()));
        assert!(table.contains("| warden |"), "{table}");
    }

    #[test]
    fn generating_is_reproducible_and_keeps_recorded_series() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        let recorded = r#"{"series":[{"file":"recorded/x.csv","leak":false,"limit_bytes":1,"source":"recorded"}]}"#;
        write(&first.path().join("manifest.json"), recorded);
        let n = generate_corpus(first.path(), 3).unwrap();
        assert_eq!(n, 7 * PER_GROUP * 2);
        generate_corpus(second.path(), 3).unwrap();
        let read = |dir: &Path, file: &str| std::fs::read(dir.join(file)).unwrap();
        for file in [
            "generated/leak-0.25-steady-01.csv",
            "generated/sawtooth-18.csv",
        ] {
            assert_eq!(
                read(first.path(), file),
                read(second.path(), file),
                "{file}"
            );
        }
        let manifest: Manifest =
            serde_json::from_slice(&read(first.path(), "manifest.json")).unwrap();
        assert_eq!(manifest.series.len(), n + 1);
        assert!(manifest.series.iter().any(|s| s.file == "recorded/x.csv"));
        let leaks = manifest.series.iter().filter(|s| s.leak).count();
        assert_eq!(leaks, 7 * PER_GROUP);
        // Every generated leak reaches its limit at its end.
        for label in manifest.series.iter().filter(|s| s.leak).take(10) {
            let points = read_csv(&first.path().join(&label.file)).unwrap();
            let last = points[points.len() - 1].0;
            let peak = points
                .iter()
                .filter(|p| p.0 >= last - 300.0)
                .map(|p| p.1)
                .fold(0.0, f64::max);
            assert_eq!(peak, label.limit_bytes, "{}", label.file);
        }
    }

    /// `cargo test -p warden-monitor --release bench -- --ignored --nocapture`
    #[test]
    #[ignore = "scores the whole committed corpus; run with --release"]
    fn bench_detector_on_the_committed_corpus() {
        let met = run_detector_bench(&args(committed_corpus())).unwrap();
        println!("goals met: {met}");
    }

    /// Lists the series each detector got wrong: `FAILURES=1 cargo test ... bench_failures`.
    #[test]
    #[ignore = "diagnostics"]
    fn bench_failures() {
        let args = args(committed_corpus());
        let corpus = load_corpus(&args.corpus).unwrap();
        let rules = BenchRules::new(args.horizon);
        let outcomes = evaluate_all(&corpus, &rules, 15.0);
        for (series, outcome) in corpus.iter().zip(&outcomes) {
            let onset = series.label.onset_s.unwrap_or(f64::INFINITY);
            let w = outcome[0].fired_at;
            let p = outcome[2].fired_at;
            let wanted = std::env::var("SHOW").ok();
            let wrong = match w {
                Some(at) => at < onset,
                None => series.label.leak,
            } || wanted.is_some_and(|f| series.label.file.contains(&f));
            if wrong {
                println!(
                    "{} leak={} onset={:?} warden={:?} promql={:?} limit={:.0}MiB end={} delays w={:?} p={:?}",
                    series.label.file,
                    series.label.leak,
                    series.label.onset_s,
                    w,
                    p,
                    series.label.limit_bytes / MIB,
                    series.points[series.points.len() - 1].0,
                    w.map(|t| ((t - onset) / 60.0).round()),
                    p.map(|t| ((t - onset) / 60.0).round()),
                );
            }
        }
    }

    /// Traces the detector along one series: `TRACE=generated/x.csv`.
    #[test]
    #[ignore = "diagnostics"]
    fn bench_trace() {
        let Ok(file) = std::env::var("TRACE") else {
            return;
        };
        let args = args(committed_corpus());
        let corpus = load_corpus(&args.corpus).unwrap();
        let series = corpus.iter().find(|s| s.label.file == file).unwrap();
        let rule = LeakRule {
            horizon: args.horizon,
            ..LeakRule::default()
        };
        let from: f64 = std::env::var("FROM")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let to: f64 = std::env::var("TO")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::INFINITY);
        let points = &series.points;
        let mut now = points[0].0 + 60.0;
        while now <= points[points.len() - 1].0 {
            if now >= from && now <= to {
                let upto = points.partition_point(|&(t, _)| t <= now);
                let seen = &points[..upto];
                let lo = seen.partition_point(|&(t, _)| t < now - rule.window.as_secs_f64());
                let line = detector::trace(&seen[lo..], series.label.limit_bytes, &rule);
                println!(
                    "t={:>6.0} ({:>5.1}min) now={:.1}MiB {line}",
                    now,
                    now / 60.0,
                    seen[upto - 1].1 / MIB
                );
            }
            now += 60.0;
        }
    }

    #[test]
    #[ignore = "rewrites benches/detector-corpus/generated"]
    fn bench_generate_the_committed_corpus() {
        let seed = std::env::var("BENCH_SEED")
            .ok()
            .and_then(|s| s.parse().ok());
        generate_corpus(&committed_corpus(), seed.unwrap_or(DEFAULT_SEED)).unwrap();
    }
}
