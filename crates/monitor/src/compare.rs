//! Does a new release's memory grow faster than the release it replaced did at the
//! same age? Canary analysis (a canary against its baseline, as Kayenta and Argo
//! Rollouts' analysis runs judge one) asked of memory in a release's first minutes.
//!
//! The leak detector ([`crate::detector`]) judges a series on its own, and on a young
//! process it cannot tell a leak from a warm-up or a cache filling, so it waits for
//! a sixth of its window (10 minutes by default). A new release has a reference the
//! detector lacks: the release it replaced went through the same start-up under the
//! same users, and its memory then is in the store. Start-up allocations, pools and
//! caches filling are the same code in both and cancel out; memory one release keeps
//! taking that the other did not is the change.
//!
//! # Method, for heap and for RSS
//!
//! 1. **Ages.** A sample's age is its time since its process started
//!    (`process_start_time_seconds`). The new release is compared from `settle` after
//!    its start (start-up itself is not steady in either) up to its age now, or up to
//!    the oldest age the previous release's stored samples reach, if sooner.
//! 2. **Excess.** At each of the new release's samples, its memory minus the previous
//!    release's memory at the same age (interpolated between its samples). With
//!    several previous instances, each is compared and the one that grew the most
//!    decides, so the new release has to outgrow every one of them.
//! 3. **Verdict.** The excess is fitted as the detector fits floors: a Theil–Sen slope
//!    with Sen's 95 % interval and a Mann–Kendall test, corrected for serial
//!    correlation. It is a leak when the excess grows significantly
//!    (`p < significance`), the low end of its rate is at least
//!    `min_rate_bytes_per_s`, it grows steadily (from each third of the compared
//!    ages to the next its lowest point rises by half to twice what the slope
//!    predicts, so a longer warm-up that is levelling off does not count), and at the
//!    low end of its rate the memory reaches the limit within `horizon`.
//!
//! The verdict is drawn once the compared ages span at least `span`, during the
//! first `period` of the new release's life, and it has its own `for`: Warden goes
//! on to judge the release with the detector alone after that.
//!
//! # Where a baseline comes from
//!
//! [`load_baseline`] reads the event log and the stored series: the latest
//! `deploy.completed` of the new release names the release it replaced (`from`), that
//! release's own latest `deploy.completed` says when it took traffic, and the stored
//! heap, RSS and process start times of its instances from then until the new release
//! took over give its memory by age. Instances that had been running long before (a warm release brought back)
//! are not a start-up to compare with and are left out. The samples must still be
//! raw (`monitor.raw_retention`, a day by default): five-minute rollups are too
//! coarse for minutes of comparison.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use warden_memtest::stats;
use warden_store::kinds::DEPLOYED;
use warden_store::{EventFilter, Store};

use crate::detector::{self, Assessment, LeakRule, Verdict};
use crate::scrape::series;

/// A stored metric every process reports, giving its start (unix seconds).
pub const PROCESS_START: &str = "process_start_time_seconds";
/// Fewest samples of the new release in the compared ages.
const MIN_POINTS: usize = 8;
/// Fewest samples per third of the compared ages.
const MIN_PER_THIRD: usize = 2;

/// How a new release is compared with the one it replaced: `[alerts.leak.compare]`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompareRule {
    /// Whether new releases are compared. Default true.
    pub enabled: bool,
    /// The first ages, not compared: start-up. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub settle: Duration,
    /// The compared ages must span at least this before a verdict. Default 1 min.
    #[serde(with = "humantime_serde")]
    pub span: Duration,
    /// The comparison's verdict must hold for this long before the alert fires.
    /// Default 30 s.
    #[serde(rename = "for", with = "humantime_serde")]
    pub for_: Duration,
    /// A release is compared during this much of its life. Default 10 min.
    #[serde(with = "humantime_serde")]
    pub period: Duration,
}

impl Default for CompareRule {
    fn default() -> Self {
        Self {
            enabled: true,
            settle: Duration::from_secs(30),
            span: Duration::from_secs(60),
            for_: Duration::from_secs(30),
            period: Duration::from_secs(600),
        }
    }
}

impl CompareRule {
    /// Checks the durations, naming the first bad one.
    pub fn validate(&self) -> Result<(), String> {
        if self.span < Duration::from_secs(1) {
            return Err("span must be at least 1s".to_owned());
        }
        if self.settle + self.span > self.period {
            return Err(format!(
                "settle + span ({}) must fit in period ({})",
                humantime::format_duration(self.settle + self.span),
                humantime::format_duration(self.period)
            ));
        }
        Ok(())
    }
}

/// The memory of the release a new one replaced, by age: what it is compared with.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Baseline {
    /// The release.
    pub release: String,
    /// Heap allocated of each of its instances: `(seconds since the process
    /// started, bytes)`, oldest first.
    pub heap: Vec<Vec<(f64, f64)>>,
    /// RSS of each of its instances, the same way.
    pub rss: Vec<Vec<(f64, f64)>>,
}

/// Compares `points` — the new release's `(age in seconds, bytes)`, ages strictly
/// increasing — with `baseline`, one series of the previous release per instance.
///
/// `None` when there is nothing to judge yet or any more: the release is older than
/// `period`, the compared ages span less than `span`, too few samples, or no
/// baseline instance covers the ages. Otherwise the assessment of the excess: its
/// rate is how much faster than the previous release this one grows.
#[must_use]
pub fn compare(
    points: &[(f64, f64)],
    baseline: &[Vec<(f64, f64)>],
    limit: f64,
    rule: &LeakRule,
    compare: &CompareRule,
) -> Option<Assessment> {
    let &(age_now, current) = points.last()?;
    let readable = |series: &[(f64, f64)]| {
        series
            .iter()
            .all(|&(t, bytes)| t.is_finite() && bytes.is_finite() && bytes >= 0.0)
            && series.windows(2).all(|pair| pair[0].0 < pair[1].0)
    };
    if age_now > compare.period.as_secs_f64() || !readable(points) || limit.is_nan() || limit <= 0.0
    {
        return None;
    }
    let from = compare.settle.as_secs_f64();
    // Previous instances whose stored start-up reaches back to `settle`.
    let usable: Vec<&Vec<(f64, f64)>> = baseline
        .iter()
        .filter(|b| readable(b) && b.first().is_some_and(|&(t, _)| t <= from))
        .collect();
    let reach = usable
        .iter()
        .filter_map(|b| b.last().map(|&(t, _)| t))
        .fold(f64::NEG_INFINITY, f64::max);
    let to = age_now.min(reach);
    if to - from < compare.span.as_secs_f64() {
        return None;
    }
    let compared: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|&(t, _)| t >= from && t <= to)
        .collect();
    if compared.len() < MIN_POINTS {
        return None;
    }
    // The previous instance that grew the most over these ages decides.
    let trend = usable
        .iter()
        .filter(|b| b.last().is_some_and(|&(t, _)| t >= to))
        .filter_map(|b| {
            let excess: Vec<(f64, f64)> = compared
                .iter()
                .map(|&(t, bytes)| (t - to, bytes - at_age(b, t)))
                .collect();
            let trend = detector::autocorrelation_corrected(
                &excess,
                stats::trend(&excess, detector::CONFIDENCE)?,
            )?;
            Some((excess, trend))
        })
        .min_by(|a, b| a.1.slope.total_cmp(&b.1.slope));
    let (excess, trend) = trend?;

    let growing = trend.slope > 0.0 && trend.p_increasing < rule.significance;
    let third = (to - from) / 3.0;
    let mut lows = [f64::INFINITY; 3];
    let mut counts = [0_usize; 3];
    for &(t, bytes) in &excess {
        // Times are relative to `to`, so the first third starts at `-3 × third`.
        let k = (((t + 3.0 * third) / third).floor().max(0.0) as usize).min(2);
        lows[k] = lows[k].min(bytes);
        counts[k] += 1;
    }
    let steady = counts.iter().all(|&c| c >= MIN_PER_THIRD)
        && detector::steady(
            &lows,
            trend.slope * third,
            detector::NOISE_TOLERANCE * detector::floor_noise(&excess, trend.slope),
        );
    // Headroom from the highest memory so far, compared or not (after the
    // predecessor's samples end, the verdict stands on the ages they cover).
    let peak = points.iter().map(|&(_, b)| b).fold(0.0, f64::max);
    let headroom = Some((limit - peak).max(0.0));
    let soon = detector::time_to(headroom, trend.low).is_some_and(|left| left <= rule.horizon);
    let verdict = detector::verdict(
        growing,
        steady,
        trend.low >= rule.min_rate_bytes_per_s && soon,
    );
    Some(Assessment {
        leaking: verdict == Verdict::Leak,
        verdict,
        rate_bytes_per_s: trend.slope,
        rate_low: trend.low,
        rate_high: trend.high,
        p_value: trend.p_increasing,
        current_bytes: current,
        exhaustion_in: detector::time_to(headroom, trend.slope),
    })
}

/// `series` at `age`, linearly between its samples (held flat past either end).
fn at_age(series: &[(f64, f64)], age: f64) -> f64 {
    let after = series.partition_point(|&(t, _)| t < age);
    match (after.checked_sub(1).map(|i| series[i]), series.get(after)) {
        (Some((t0, v0)), Some(&(t1, v1))) if t1 > t0 => v0 + (v1 - v0) * (age - t0) / (t1 - t0),
        (_, Some(&(_, v))) | (Some((_, v)), None) => v,
        (None, None) => 0.0,
    }
}

/// What [`load_baseline`] found.
#[derive(Clone, Debug, PartialEq)]
pub enum Lookup {
    /// The release has not taken traffic yet (its deploy is under way): ask again.
    NotYet,
    /// Nothing to compare with: the first release, a release brought back by a
    /// rollback, or a predecessor whose start-up is no longer stored raw.
    Nothing,
    /// The predecessor's memory by age.
    Found(Baseline),
}

/// The baseline of `release`: its predecessor's memory in its own first `period`
/// (module docs).
///
/// # Errors
/// The store cannot be read.
pub fn load_baseline(
    store: &Store,
    release: &str,
    period: Duration,
) -> warden_store::Result<Lookup> {
    let deploys = store.events(&EventFilter {
        kind_prefix: Some(DEPLOYED.to_owned()),
        newest: Some(200),
        ..EventFilter::default()
    })?;
    let deploys: Vec<_> = deploys.into_iter().filter(|e| e.kind == DEPLOYED).collect();
    let Some(deployed) = deploys
        .iter()
        .find(|e| e.release.as_deref() == Some(release))
    else {
        return Ok(Lookup::NotYet);
    };
    let Some(previous) = deployed.payload["from"].as_str().filter(|p| *p != release) else {
        return Ok(Lookup::Nothing);
    };
    let Some(activated) = deploys
        .iter()
        .find(|e| e.release.as_deref() == Some(previous) && e.at_ms <= deployed.at_ms)
        .map(|e| e.at_ms)
    else {
        return Ok(Lookup::Nothing);
    };
    let period_ms = i64::try_from(period.as_millis()).unwrap_or(i64::MAX / 4);
    // Until the new release took its traffic: after that the previous one idles.
    let (from_ms, to_ms) = (
        activated.saturating_sub(period_ms),
        activated.saturating_add(period_ms).min(deployed.at_ms),
    );
    let matcher = [("release", previous)];
    let starts = store.query(PROCESS_START, &matcher, from_ms, to_ms)?;
    let mut baseline = Baseline {
        release: previous.to_owned(),
        ..Baseline::default()
    };
    let period_s = period.as_secs_f64();
    for (name, kind, out) in [
        (series::HEAP, Some("allocated"), &mut baseline.heap),
        (series::RSS, None, &mut baseline.rss),
    ] {
        for data in store.query(name, &matcher, from_ms, to_ms)? {
            if kind.is_some_and(|k| data.labels.get("kind").map(String::as_str) != Some(k)) {
                continue;
            }
            let instance = data.labels.get("instance");
            let Some(started) = starts
                .iter()
                .find(|s| s.labels.get("instance") == instance)
                .and_then(|s| s.points.first().map(|&(_, v)| v))
            else {
                continue;
            };
            // Started long before it took traffic: a warm release brought back.
            if started * 1000.0 < from_ms as f64 {
                continue;
            }
            let aged: Vec<(f64, f64)> = data
                .points
                .iter()
                .map(|&(t, v)| (t as f64 / 1000.0 - started, v))
                .filter(|&(age, _)| (0.0..=period_s).contains(&age))
                .collect();
            if aged.len() >= MIN_POINTS {
                out.push(aged);
            }
        }
    }
    Ok(if baseline.heap.is_empty() && baseline.rss.is_empty() {
        Lookup::Nothing
    } else {
        Lookup::Found(baseline)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use warden_store::{Labels, NewEvent, Sample};

    const MIB: f64 = 1_048_576.0;
    /// The drill's leak: 2 KiB × 100 requests/s.
    const LEAK: f64 = 204_800.0;
    const LIMIT: f64 = 1024.0 * MIB;

    /// A small deterministic generator for jitter.
    struct Rng(u64);
    impl Rng {
        fn jitter(&mut self, scale: f64) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            ((self.0 >> 11) as f64 / (1_u64 << 53) as f64 * 2.0 - 1.0) * scale
        }
    }

    /// A process's start-up: 40 MiB at once, 20 MiB more within about a minute.
    fn warm_up(age: f64) -> f64 {
        40.0 * MIB + 20.0 * MIB * (1.0 - (-age / 20.0).exp())
    }

    /// Samples every 5 s from `first` (a scrape's phase) up to `until`.
    fn series(first: f64, until: f64, seed: u64, shape: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        (0..)
            .map(|k| first + 5.0 * f64::from(k))
            .take_while(|&age| age <= until)
            .map(|age| (age, shape(age) + rng.jitter(MIB)))
            .collect()
    }

    fn judge(new: &[(f64, f64)], baseline: &[Vec<(f64, f64)>]) -> Option<Assessment> {
        compare(
            new,
            baseline,
            LIMIT,
            &LeakRule::default(),
            &CompareRule::default(),
        )
    }

    /// The first age at which `new` is judged leaking, evaluating as the engine does.
    fn first_leak(new: &[(f64, f64)], baseline: &[Vec<(f64, f64)>]) -> Option<f64> {
        (1..=new.len())
            .find(|&n| judge(&new[..n], baseline).is_some_and(|a| a.leaking))
            .map(|n| new[n - 1].0)
    }

    #[test]
    fn a_leaking_release_is_told_from_its_predecessor_within_two_minutes() {
        let baseline = vec![series(2.0, 180.0, 1, warm_up)];
        let new = series(3.0, 600.0, 2, |age| warm_up(age) + LEAK * age);
        let first = first_leak(&new, &baseline).expect("the leak is found");
        assert!((90.0..=120.0).contains(&first), "first judged at {first} s");
        let at = judge(
            &new[..=new.iter().position(|p| p.0 == first).unwrap()],
            &baseline,
        )
        .unwrap();
        assert_eq!(at.verdict, Verdict::Leak);
        assert!(
            at.rate_low <= LEAK && LEAK <= at.rate_high,
            "{:.0} not in {:.0}..{:.0}",
            LEAK,
            at.rate_low,
            at.rate_high
        );
        assert!(at.exhaustion_in.is_some());
    }

    #[test]
    fn the_same_code_never_differs_from_itself() {
        for seed in 0..40 {
            let baseline = vec![series(1.0, 600.0, seed, warm_up)];
            let new = series(4.0, 600.0, seed + 1000, warm_up);
            assert_eq!(first_leak(&new, &baseline), None, "seed {seed}");
        }
    }

    #[test]
    fn a_bigger_start_up_that_levels_off_is_not_a_leak() {
        // The new release allocates 30 MiB more while it starts, filling within a
        // minute or so: more memory, not a leak.
        let baseline = vec![series(1.0, 600.0, 3, warm_up)];
        let new = series(4.0, 600.0, 4, |age| {
            warm_up(age) + 30.0 * MIB * (1.0 - (-age / 15.0).exp())
        });
        assert_eq!(first_leak(&new, &baseline), None);
        // A step at 45 s (a table allocated on first use) is not one either.
        let new = series(4.0, 600.0, 5, |age| {
            warm_up(age) + if age > 45.0 { 25.0 * MIB } else { 0.0 }
        });
        assert_eq!(first_leak(&new, &baseline), None);
    }

    #[test]
    fn a_slow_difference_is_too_slow_to_matter() {
        // 512 B/s more than before: real, but below `min_rate_bytes_per_s`.
        let baseline = vec![series(1.0, 600.0, 6, warm_up)];
        let new = series(4.0, 600.0, 7, |age| warm_up(age) + 512.0 * age);
        assert_eq!(first_leak(&new, &baseline), None);
    }

    #[test]
    fn the_predecessor_that_grew_most_decides() {
        // One previous instance leaked as much itself: the new release is no worse.
        let baseline = vec![
            series(1.0, 600.0, 8, warm_up),
            series(2.0, 600.0, 9, |age| warm_up(age) + LEAK * age),
        ];
        let new = series(4.0, 600.0, 10, |age| warm_up(age) + LEAK * age);
        assert_eq!(first_leak(&new, &baseline), None);
    }

    #[test]
    fn nothing_is_judged_without_a_baseline_that_covers_the_ages() {
        let new = series(3.0, 600.0, 11, |age| warm_up(age) + LEAK * age);
        // Too young: settle (30 s) + span (60 s) not reached.
        assert_eq!(judge(&new[..15], &[series(1.0, 600.0, 12, warm_up)]), None);
        // The baseline stops before settle + span.
        assert_eq!(judge(&new[..30], &[series(1.0, 80.0, 12, warm_up)]), None);
        // The baseline starts after settle (its start-up was not stored).
        assert_eq!(judge(&new[..30], &[series(40.0, 600.0, 12, warm_up)]), None);
        // Past the period (10 min), the detector alone judges.
        let old = series(3.0, 700.0, 13, |age| warm_up(age) + LEAK * age);
        assert_eq!(judge(&old, &[series(1.0, 700.0, 12, warm_up)]), None);
        // A baseline shorter than the new release's age: compared up to its end.
        let short = judge(&new[..40], &[series(1.0, 120.0, 12, warm_up)]).unwrap();
        assert!(short.leaking, "{short:?}");
    }

    #[test]
    fn unreadable_input_is_not_judged_and_does_not_panic() {
        let good = series(1.0, 300.0, 14, warm_up);
        let mut bad = good.clone();
        bad[20].1 = f64::NAN;
        assert_eq!(judge(&bad, std::slice::from_ref(&good)), None);
        let mut unsorted = good.clone();
        unsorted.swap(3, 4);
        assert_eq!(judge(&unsorted, std::slice::from_ref(&good)), None);
        assert_eq!(judge(&[], std::slice::from_ref(&good)), None);
        assert_eq!(judge(&good, &[]), None);
        // An unreadable baseline instance is skipped, not trusted.
        let new = series(3.0, 300.0, 15, |age| warm_up(age) + LEAK * age);
        assert_eq!(judge(&new, &[bad]), None);
        assert_eq!(
            compare(
                &good,
                std::slice::from_ref(&good),
                0.0,
                &LeakRule::default(),
                &CompareRule::default()
            ),
            None
        );
    }

    #[test]
    fn a_rule_validates_and_reads_from_toml() {
        let rule: CompareRule =
            toml::from_str("settle = \"10s\"\nspan = \"20s\"\nfor = \"5s\"\n").unwrap();
        assert_eq!(rule.span, Duration::from_secs(20));
        assert_eq!(rule.for_, Duration::from_secs(5));
        assert!(rule.enabled);
        assert!(rule.validate().is_ok());
        let too_long = CompareRule {
            settle: Duration::from_secs(600),
            ..CompareRule::default()
        };
        assert!(too_long.validate().unwrap_err().contains("period"));
        assert!(toml::from_str::<CompareRule>("spam = 1").is_err());
    }

    /// Diagnostics: replays the comparison over a recorded data dir's store, e.g. a
    /// drill kept with `--keep DIR`:
    /// `COMPARE_DB=DIR/data/control.db COMPARE_RELEASE=v2 cargo test --release -p
    /// warden-monitor compare_replay -- --ignored --nocapture`.
    #[test]
    #[ignore = "diagnostics on a recorded store"]
    fn compare_replay() {
        let store =
            Store::open(std::path::Path::new(&std::env::var("COMPARE_DB").unwrap())).unwrap();
        let release = std::env::var("COMPARE_RELEASE").unwrap_or_else(|_| "v2".into());
        let rule = CompareRule::default();
        let Lookup::Found(baseline) = load_baseline(&store, &release, rule.period).unwrap() else {
            panic!("no baseline for {release}");
        };
        let matcher = [("release", release.as_str())];
        let started = store.query(PROCESS_START, &matcher, 0, i64::MAX).unwrap()[0].points[0].1;
        for (name, against) in [(series::HEAP, &baseline.heap), (series::RSS, &baseline.rss)] {
            let data = store.query(name, &matcher, 0, i64::MAX).unwrap();
            let data = data
                .iter()
                .find(|d| {
                    name != series::HEAP
                        || d.labels.get("kind").map(String::as_str) == Some("allocated")
                })
                .unwrap();
            let aged: Vec<(f64, f64)> = data
                .points
                .iter()
                .map(|&(t, v)| (t as f64 / 1000.0 - started, v))
                .collect();
            for n in 1..=aged.len() {
                if let Some(a) = compare(&aged[..n], against, LIMIT, &LeakRule::default(), &rule) {
                    println!(
                        "{name} {release} at {:.0} s: {}",
                        aged[n - 1].0,
                        a.summary_of("excess")
                    );
                }
            }
        }
    }

    fn at(store: &Store, at_ms: i64, kind: &str, release: &str, from: Option<&str>) {
        store
            .append_event_at(
                at_ms,
                &NewEvent {
                    kind: kind.into(),
                    release: Some(release.into()),
                    payload: serde_json::json!({ "from": from }),
                },
            )
            .unwrap();
    }

    fn samples(store: &Store, release: &str, instance: &str, started_s: f64, from_ms: i64) {
        let labels = |extra: &[(&str, &str)]| {
            let mut l = Labels::from([
                ("instance".to_owned(), instance.to_owned()),
                ("release".to_owned(), release.to_owned()),
            ]);
            l.extend(
                extra
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            );
            l
        };
        for k in 0..60 {
            let ts = from_ms + k * 5000;
            let sample = |name: &str, extra: &[(&str, &str)], value: f64| Sample {
                name: name.into(),
                labels: labels(extra),
                value,
            };
            store
                .append_samples(
                    ts,
                    &[
                        sample(series::HEAP, &[("kind", "allocated")], 1e6 + k as f64),
                        sample(series::HEAP, &[("kind", "resident")], 9e9),
                        sample(series::RSS, &[], 2e6 + k as f64),
                        sample(PROCESS_START, &[], started_s),
                    ],
                )
                .unwrap();
        }
    }

    #[test]
    fn the_baseline_is_the_predecessors_start_up_read_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("control.db")).unwrap();
        let t0: i64 = 1_764_000_000_000;
        let period = Duration::from_secs(600);
        // v1 started by `warden up` at t0; v2 deployed an hour later.
        at(&store, t0, DEPLOYED, "v1", None);
        samples(&store, "v1", "127.0.0.1:9001", t0 as f64 / 1000.0 - 1.0, t0);
        assert_eq!(load_baseline(&store, "v2", period).unwrap(), Lookup::NotYet);
        assert_eq!(
            load_baseline(&store, "v1", period).unwrap(),
            Lookup::Nothing
        );
        at(&store, t0 + 3_600_000, DEPLOYED, "v2", Some("v1"));
        let Lookup::Found(baseline) = load_baseline(&store, "v2", period).unwrap() else {
            panic!("no baseline");
        };
        assert_eq!(baseline.release, "v1");
        assert_eq!((baseline.heap.len(), baseline.rss.len()), (1, 1));
        // Aged from the process start, the allocated heap only.
        assert_eq!(baseline.heap[0][0], (1.0, 1e6));
        assert_eq!(baseline.rss[0][1], (6.0, 2e6 + 1.0));

        // v1 deployed again while still warm (its old processes take the traffic),
        // then v3 from it: v1 was not starting up then, so nothing to compare with.
        at(&store, t0 + 7_200_000, DEPLOYED, "v1", Some("v2"));
        samples(
            &store,
            "v1",
            "127.0.0.1:9001",
            t0 as f64 / 1000.0 - 1.0,
            t0 + 7_200_000,
        );
        at(&store, t0 + 7_300_000, DEPLOYED, "v3", Some("v1"));
        assert_eq!(
            load_baseline(&store, "v3", period).unwrap(),
            Lookup::Nothing
        );

        // Only while it served: v2 deployed 100 s after v1 started ends v1's baseline.
        let store = Store::in_memory().unwrap();
        at(&store, t0, DEPLOYED, "v1", None);
        samples(&store, "v1", "127.0.0.1:9001", t0 as f64 / 1000.0 - 1.0, t0);
        at(&store, t0 + 100_000, DEPLOYED, "v2", Some("v1"));
        let Lookup::Found(baseline) = load_baseline(&store, "v2", period).unwrap() else {
            panic!("no baseline");
        };
        assert_eq!(baseline.heap[0].last(), Some(&(101.0, 1e6 + 20.0)));
    }
}
