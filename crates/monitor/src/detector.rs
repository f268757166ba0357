//! Is a live memory series leaking, and how soon will it run out?
//!
//! The alert rules engine calls [`assess`] on every evaluation (every 5 s by default)
//! for each instance, once on the recent heap series and once on RSS, and feeds the
//! result to a [`LeakTracker`], which applies the rule's `for` duration and hysteresis.
//! `warden bench detector` drives the very same two pieces over a labelled corpus.
//!
//! # What a leak looks like, and what only resembles one
//!
//! Production memory moves for many reasons that are not leaks: a warm-up that levels
//! off, a cache filling to its bound, a garbage-collector or allocator sawtooth (teeth
//! of a few minutes, 20–30 % high), a one-off step when a feature allocates its
//! tables, a restart that drops to a baseline and warms up again, and wander with
//! load. A leak is the one shape where the *floor* of the series — the memory held
//! when the load is quiet and the teeth are at their trough — keeps rising at a steady
//! rate and keeps reaching new highs. So the verdict is drawn from the floor, never
//! from raw samples. For one time scale (a span of the latest history):
//!
//! 1. **Floors.** The span is cut into 24 equal sub-intervals and each keeps its
//!    lowest sample. Load bursts and sawtooth teeth sit above the floor and vanish.
//! 2. **Trend.** A Theil–Sen slope with Sen's 95 % interval, and a one-sided
//!    Mann–Kendall test, on the floors ([`warden_memtest::stats::trend`]): rank-based,
//!    so one wild floor cannot drag them. Both assume independent points, and memory
//!    that follows load is not: its floors sit above or below the line for minutes at
//!    a time. So the variance of the Mann–Kendall statistic (and the width of the
//!    interval) is inflated by (1 + ρ) / (1 − ρ), ρ being the lag-1 autocorrelation of
//!    the floors around the line, as for an AR(1) series. Growth must be significant
//!    (`p < significance`).
//! 3. **Sustained.** From one third of the span to the next, the lowest and the
//!    median floor must each rise by 0.5 to 2 times what the slope predicts for a
//!    third, and the two rises must be within a factor 0.65 of each other (half a
//!    standard deviation of floor noise allowed on each comparison). A warm-up or a cache that levels off fails
//!    in its last third, a step fails in the thirds it does not cross, a restart fails
//!    where memory dropped, and a sawtooth fails because each third (or pair of
//!    thirds) has a trough at the same level. The latest third's lowest floor must also
//!    be above every floor before the span, within the rule's window: a leak reaches
//!    new highs, load wander comes back to where it was.
//! 4. **Forecast.** The headroom is the limit minus the *peaks*: the fitted floor now
//!    plus the 95th percentile of how far samples sit above the floor line (teeth and
//!    bursts touch the limit first). The verdict is a leak only if the headroom runs
//!    out within `horizon` even at the low end of the rate's interval, and the rate is
//!    at least `min_rate_bytes_per_s`. [`Assessment::exhaustion_in`] reports the
//!    forecast at the fitted rate.
//!
//! # Eleven time scales
//!
//! A fast leak must be caught in minutes, a slow one needs a long look before it
//! stands out of the noise. So the test runs on the whole `window` (60 min by
//! default) and on its latest 55, 50, ... down to 10 min (shorter by a twelfth of
//! the window at a time), longest first, and the series leaks if a scale says so —
//! unless a longer scale with enough data says memory is not growing (its slope is
//! not positive: a shorter rise is wander back up from a dip) or that its growth is
//! dying down (its second rise is below half its first, and the first was gradual
//! rather than one jump: the tail of a warm-up or of a cache fill). A scale shorter
//! than the window is only tried when there is history before it to compare with
//! (the new-high check of step 3): the first minutes of a process are its warm-up,
//! and to any one short look a warm-up is a leak. A new process is therefore judged
//! after about 10 minutes (a sixth of the window), a process that has been running
//! as soon as a scale sees its leak.
//!
//! # Sawtooth teeth
//!
//! Under GC or allocator teeth longer than a scale's sub-intervals, a sub-interval
//! that falls on a tooth's slope has no trough in it, and its floor follows the
//! tooth. So the teeth are measured first: a drop between two samples more than
//! five times the ordinary sample-to-sample change (and not the fall after a
//! one-sample spike) ends a tooth, and with at least four of them in the window,
//! each floor is the lowest sample within 1.25 tooth periods around its
//! sub-interval rather than within the sub-interval alone.
//!
//! A cache that keeps filling at a steady rate for longer than the shortest scale
//! plus `for` is, to anything that only sees memory, a leak that stopped: the alert
//! fires and resolves when the filling stops.
//!
//! # Cost
//!
//! Linear in the points of the window for each scale, plus at most eleven Theil–Sen
//! fits on 24 floors (276 pairwise slopes each, twice when the floors are serially
//! correlated).
//!
//! # Input
//!
//! Points are `(unix seconds, bytes)`, timestamps strictly increasing. Any
//! non-finite or negative value, unsorted or duplicate timestamps, a limit that is
//! not a positive number, an invalid rule, or too little history gives
//! [`Verdict::InsufficientData`], never a panic: callers should drop unreadable
//! samples before calling. A limit of `+∞` (unknown) means nothing can be forecast,
//! so growth is at most [`Verdict::TooSlow`].

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal};
use warden_memtest::stats::{self, Trend};

/// When a growing memory series is a leak worth alerting on.
///
/// In a TOML or JSON rule every field is optional; durations are humantime strings
/// (`"30m"`, `"2h"`). Call [`LeakRule::validate`] after loading one.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct LeakRule {
    /// History a verdict looks at. The test also runs on its last 11/12, 10/12, ...
    /// down to 2/12, so fast leaks are caught in about a sixth of it. Default 60 min
    /// (callers should pass at least this much history).
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Fire only if memory is forecast to reach its limit within this. Default 2 h.
    #[serde(with = "humantime_serde")]
    pub horizon: Duration,
    /// The condition must hold at every evaluation for this long before the alert
    /// fires, and be false for this long before a firing alert resolves. Default 3 min.
    #[serde(rename = "for", with = "humantime_serde")]
    pub for_: Duration,
    /// One-sided Mann–Kendall p-value below which floor growth counts. Default 0.01.
    pub significance: f64,
    /// Growth slower than this is never a leak, whatever the headroom. Default
    /// 1 KiB/s (about 84 MiB a day).
    pub min_rate_bytes_per_s: f64,
}

impl Default for LeakRule {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(60 * 60),
            horizon: Duration::from_secs(2 * 3600),
            for_: Duration::from_secs(3 * 60),
            significance: 0.01,
            min_rate_bytes_per_s: 1024.0,
        }
    }
}

impl LeakRule {
    /// Checks every field, naming the first bad one: `window` at least a minute,
    /// `horizon` positive, `significance` in (0, 1), `min_rate_bytes_per_s` finite
    /// and not negative.
    pub fn validate(&self) -> Result<(), String> {
        if self.window < Duration::from_secs(60) {
            return Err(format!(
                "window must be at least 1m (got {})",
                humantime::format_duration(self.window)
            ));
        }
        if self.horizon.is_zero() {
            return Err("horizon must be positive".to_owned());
        }
        if !(self.significance > 0.0 && self.significance < 1.0) {
            return Err(format!(
                "significance must be between 0 and 1 (got {})",
                self.significance
            ));
        }
        if !(self.min_rate_bytes_per_s.is_finite() && self.min_rate_bytes_per_s >= 0.0) {
            return Err(format!(
                "min_rate_bytes_per_s must be a number of bytes per second, 0 or more (got {})",
                self.min_rate_bytes_per_s
            ));
        }
        Ok(())
    }
}

/// Why a series is or is not leaking.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Significant, sustained growth that reaches the limit within the horizon.
    Leak,
    /// Too little history, or input that cannot be read (see the module docs).
    InsufficientData,
    /// The floor does not rise significantly.
    NoSignificantGrowth,
    /// The floor rose, but not steadily across the window: levelling off, a step, a
    /// sawtooth or a restart.
    NotSustained,
    /// Growth is real but slower than the minimum rate, or the limit is beyond the
    /// horizon.
    TooSlow,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Leak => "leak",
            Self::InsufficientData => "insufficient data",
            Self::NoSignificantGrowth => "no significant growth",
            Self::NotSustained => "growth not sustained",
            Self::TooSlow => "growth too slow to matter",
        })
    }
}

/// The outcome of one [`assess`] call.
///
/// Rates and p-value come from the time scale that decided: the longest one that
/// found a leak, or else the longest one with enough data. They are 0 (and the
/// p-value 1) when there was not enough data for any.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Assessment {
    /// Whether the alert condition holds ([`Verdict::Leak`]).
    pub leaking: bool,
    pub verdict: Verdict,
    /// Theil–Sen slope of the floor, bytes per second.
    pub rate_bytes_per_s: f64,
    /// Lower bound of the slope's 95 % confidence interval.
    pub rate_low: f64,
    /// Upper bound of the slope's 95 % confidence interval.
    pub rate_high: f64,
    /// One-sided Mann–Kendall p-value of floor growth.
    pub p_value: f64,
    /// The latest sample (0 when there is none that can be read).
    pub current_bytes: f64,
    /// Forecast time until the peaks reach the limit, when the floor grows.
    #[serde(with = "humantime_serde")]
    pub exhaustion_in: Option<Duration>,
}

impl Assessment {
    /// One sentence for an alert or a log line.
    #[must_use]
    pub fn summary(&self) -> String {
        self.summary_of("floor")
    }

    /// [`Assessment::summary`] naming what grows: the detector fits a series'
    /// floor, a release comparison the excess over the previous release.
    #[must_use]
    pub fn summary_of(&self, what: &str) -> String {
        let mib_per_min = |b: f64| b * 60.0 / 1_048_576.0;
        let mut text = format!(
            "{}: {what} grows {:.2} MiB/min (95% CI {:.2} to {:.2}, p = {:.2e}), now {:.1} MiB",
            self.verdict,
            mib_per_min(self.rate_bytes_per_s),
            mib_per_min(self.rate_low),
            mib_per_min(self.rate_high),
            self.p_value,
            self.current_bytes / 1_048_576.0,
        );
        if let Some(left) = self.exhaustion_in {
            let rounded = Duration::from_secs(left.as_secs() / 60 * 60);
            text.push_str(&format!(
                ", limit reached in about {}",
                humantime::format_duration(rounded)
            ));
        }
        text
    }
}

/// Sub-intervals of a time scale, each contributing its lowest sample.
const FLOORS: usize = 24;
/// Floors per third of a scale.
const THIRD: usize = FLOORS / 3;
/// At least this many floors must have data, and at least `MIN_PER_THIRD` per third.
const MIN_FLOORS: usize = FLOORS * 2 / 3;
const MIN_PER_THIRD: usize = 3;
/// The data must reach back at least this fraction of a scale.
const COVERAGE: f64 = 0.9;
/// From one third to the next, the lowest and the median floor must each rise by
/// at least `SUSTAINED_LOW` and at most `SUSTAINED_HIGH` times the fitted rise per
/// third...
const SUSTAINED_LOW: f64 = 0.5;
const SUSTAINED_HIGH: f64 = 2.0;
/// ... and the two rises must be within this ratio of each other (a warm-up slows).
const EVEN_RISES: f64 = 0.65;
/// Those comparisons allow this many standard deviations of floor noise.
pub(crate) const NOISE_TOLERANCE: f64 = 0.5;
/// A longer scale whose second rise is below this fraction of its first (a gradual
/// one) vetoes the shorter ones: growth dying down.
const SLOWING: f64 = 0.5;
/// The time scales: the rule's whole window, then shorter by a twelfth of it at a
/// time (5 min of the default hour) down to a sixth (10 min).
const SCALE_STEPS: u32 = 12;
const SHORTEST_SCALE_STEPS: u32 = 2;

/// The spans of the time scales of a `window` (seconds), longest first.
fn spans(window: f64) -> impl Iterator<Item = f64> {
    (SHORTEST_SCALE_STEPS..=SCALE_STEPS)
        .rev()
        .map(move |k| window * f64::from(k) / f64::from(SCALE_STEPS))
}
/// A drop between two samples larger than this many times the ordinary change is a
/// sawtooth's tooth ending...
const TOOTH_DROP: f64 = 5.0;
/// ... when there are at least this many in the window ...
const MIN_TEETH: usize = 4;
/// ... and then every floor looks this many tooth periods wide.
const TOOTH_REACH: f64 = 1.25;
/// Largest lag-1 autocorrelation of the floors the significance test corrects for.
const MAX_AUTOCORRELATION: f64 = 0.9;
/// Confidence of the reported rate interval.
pub(crate) const CONFIDENCE: f64 = 0.95;
/// How high above the floor line the peaks are taken to be (quantile of samples).
const PEAK_QUANTILE: f64 = 0.95;

/// Decides whether `points` — `(unix seconds, bytes)`, strictly increasing in time,
/// ending at the latest sample — are leaking towards `limit_bytes` under `rule`.
///
/// Points older than `rule.window` before the last one are ignored. See the module
/// docs for the method and for what counts as unreadable input.
#[must_use]
pub fn assess(points: &[(f64, f64)], limit_bytes: f64, rule: &LeakRule) -> Assessment {
    let current = points
        .last()
        .map(|&(_, bytes)| bytes)
        .filter(|b| b.is_finite() && *b >= 0.0)
        .unwrap_or(0.0);
    let readable = limit_bytes > 0.0
        && rule.validate().is_ok()
        && points
            .iter()
            .all(|&(t, bytes)| t.is_finite() && bytes.is_finite() && bytes >= 0.0)
        && points.windows(2).all(|pair| pair[0].0 < pair[1].0);
    let Some(&(now, _)) = points.last().filter(|_| readable) else {
        return insufficient(current);
    };
    let mut decided: Option<Assessment> = None;
    let window = rule.window.as_secs_f64();
    let tooth = tooth_period(&points[points.partition_point(|&(t, _)| t < now - window)..]);
    for span in spans(window) {
        let earlier = if span < window {
            // A shorter look needs history before it to compare with: on a young
            // series a warm-up looks like a leak to any one span.
            match highest_floor(points, now - window, now - span, span / FLOORS as f64) {
                Some(highest) => Some(highest),
                None => continue,
            }
        } else {
            None
        };
        let Some(scale) = measure_scale(points, now, span, earlier, tooth, limit_bytes, rule)
        else {
            continue;
        };
        if scale.verdict == Verdict::Leak {
            return scale.assessment(current);
        }
        if scale.trend.slope <= 0.0 || scale.slowing {
            // A longer look says memory is not growing, or its growth is dying down:
            // a rise over a shorter one is wander back up from a dip, or the tail of
            // a warm-up, not a leak.
            return decided.unwrap_or_else(|| scale.assessment(current));
        }
        decided.get_or_insert_with(|| scale.assessment(current));
    }
    decided.unwrap_or_else(|| insufficient(current))
}

pub(crate) fn insufficient(current: f64) -> Assessment {
    Assessment {
        leaking: false,
        verdict: Verdict::InsufficientData,
        rate_bytes_per_s: 0.0,
        rate_low: 0.0,
        rate_high: 0.0,
        p_value: 1.0,
        current_bytes: current,
        exhaustion_in: None,
    }
}

/// One time scale's figures, before they become an [`Assessment`].
struct Scale {
    trend: Trend,
    /// Lowest floor of each third (for diagnostics).
    #[cfg(test)]
    lows: [f64; 3],
    /// Median floor of each third (for diagnostics).
    #[cfg(test)]
    middles: [f64; 3],
    exhaustion_in: Option<Duration>,
    verdict: Verdict,
    /// Growth in the last third is far below growth in the first (both the lowest
    /// and the median floors): a warm-up or a cache fill dying down.
    slowing: bool,
}

impl Scale {
    fn assessment(&self, current_bytes: f64) -> Assessment {
        Assessment {
            leaking: self.verdict == Verdict::Leak,
            verdict: self.verdict,
            rate_bytes_per_s: self.trend.slope,
            rate_low: self.trend.low,
            rate_high: self.trend.high,
            p_value: self.trend.p_increasing,
            current_bytes,
            exhaustion_in: self.exhaustion_in,
        }
    }
}

/// The test on the last `span` seconds up to `now`; `None` when they hold too little
/// data. Times are taken relative to `now` so the fit stays exact with unix seconds.
/// `earlier` is the highest floor before the span, within the rule's window.
fn measure_scale(
    points: &[(f64, f64)],
    now: f64,
    span: f64,
    earlier: Option<f64>,
    tooth: Option<f64>,
    limit: f64,
    rule: &LeakRule,
) -> Option<Scale> {
    let start = now - span;
    let window = &points[points.partition_point(|&(t, _)| t < start)..];
    let &(first, _) = window.first()?;
    if window.len() < MIN_FLOORS || first - start > (1.0 - COVERAGE) * span {
        return None;
    }

    let width = span / FLOORS as f64;
    // Each floor is the lowest sample within `reach` of its sub-interval's middle:
    // the sub-interval itself, or more under a sawtooth whose teeth are longer, so
    // that every floor is a trough.
    let reach = width.max(tooth.map_or(0.0, |period| TOOTH_REACH * period));
    let mut lowest = [f64::INFINITY; FLOORS];
    for (k, floor) in lowest.iter_mut().enumerate() {
        let middle = start + (k as f64 + 0.5) * width;
        let from = window.partition_point(|&(t, _)| t < middle - reach / 2.0);
        let to = window.partition_point(|&(t, _)| t < middle + reach / 2.0);
        *floor = window[from..to]
            .iter()
            .map(|&(_, bytes)| bytes)
            .fold(f64::INFINITY, f64::min);
    }
    let floors: Vec<(f64, f64)> = lowest
        .iter()
        .enumerate()
        .filter(|(_, bytes)| bytes.is_finite())
        .map(|(k, &bytes)| ((k as f64 + 0.5) * width - span, bytes))
        .collect();
    let mut lows = [0.0; 3];
    let mut middles = [0.0; 3];
    for (j, third) in lowest.chunks(THIRD).enumerate().take(3) {
        let mut present: Vec<f64> = third.iter().copied().filter(|b| b.is_finite()).collect();
        if present.len() < MIN_PER_THIRD {
            return None;
        }
        middles[j] = stats::median(&mut present);
        lows[j] = present[0];
    }
    if floors.len() < MIN_FLOORS {
        return None;
    }
    let trend = autocorrelation_corrected(&floors, stats::trend(&floors, CONFIDENCE)?)?;

    let growing = trend.slope > 0.0 && trend.p_increasing < rule.significance;
    let rise_per_third = trend.slope * span / 3.0;
    let noise = floor_noise(&floors, trend.slope);
    let tolerance = NOISE_TOLERANCE * noise;
    // Growth dying down, as opposed to a step or a restart followed by steady growth:
    // the early rise is gradual, not one jump between neighbouring floors.
    let largest_jump = floors
        .windows(2)
        .map(|pair| pair[1].1 - pair[0].1)
        .fold(0.0, f64::max);
    let dying = |levels: &[f64; 3]| {
        let (first, second) = (levels[1] - levels[0], levels[2] - levels[1]);
        second < SLOWING * first - tolerance && largest_jump < 0.5 * first
    };
    let slowing = dying(&lows) && dying(&middles);
    // A leak keeps taking memory to new highs; load wander returns to where it was.
    let new_high = earlier.is_none_or(|highest| lows[2] > highest);
    let sustained = steady(&lows, rise_per_third, tolerance)
        && steady(&middles, rise_per_third, tolerance)
        && new_high;
    let headroom = headroom(window, now, &trend, limit);
    let exhaustion_in = time_to(headroom, trend.slope);
    // Alert only if even the low end of the rate's interval runs out within the horizon.
    let soon = time_to(headroom, trend.low).is_some_and(|left| left <= rule.horizon);
    let verdict = verdict(
        growing,
        sustained,
        trend.slope >= rule.min_rate_bytes_per_s && soon,
    );
    Some(Scale {
        trend,
        #[cfg(test)]
        lows,
        #[cfg(test)]
        middles,
        exhaustion_in,
        verdict,
        slowing,
    })
}

/// Whether three successive levels (one per third of a span) rise steadily: each
/// rise within `SUSTAINED_LOW`..`SUSTAINED_HIGH` times `rise_per_third` and the two
/// within `EVEN_RISES` of each other, `tolerance` bytes allowed on each comparison.
pub(crate) fn steady(levels: &[f64; 3], rise_per_third: f64, tolerance: f64) -> bool {
    let (first, second) = (levels[1] - levels[0], levels[2] - levels[1]);
    [first, second].iter().all(|&rise| {
        rise >= SUSTAINED_LOW * rise_per_third - tolerance
            && rise <= SUSTAINED_HIGH * rise_per_third + tolerance
    }) && second >= EVEN_RISES * first - tolerance
        && first >= EVEN_RISES * second - tolerance
}

/// `trend` (fitted to `floors`) with its p-value and interval corrected for serial
/// correlation of the floors.
///
/// Mann–Kendall and Sen's interval assume independent points. Memory that follows
/// load wanders: its floors sit above or below the line for minutes at a time, and
/// the test then finds "significant" trends in noise all the time. So the variance of
/// S is inflated by (1 + ρ) / (1 − ρ), ρ being the lag-1 autocorrelation of the floors
/// around the fitted line (clamped to 0..=0.9), which is the variance inflation of an
/// AR(1) series (Yue & Wang 2004 use the same effective-sample-size idea). Floors of a
/// leak under independent noise have ρ ≈ 0 and lose nothing.
pub(crate) fn autocorrelation_corrected(floors: &[(f64, f64)], trend: Trend) -> Option<Trend> {
    let residuals: Vec<f64> = floors
        .iter()
        .map(|&(x, y)| y - (trend.intercept + trend.slope * x))
        .collect();
    let energy: f64 = residuals.iter().map(|r| r * r).sum();
    let lagged: f64 = residuals.windows(2).map(|pair| pair[0] * pair[1]).sum();
    let rho = if energy > 0.0 {
        (lagged / energy).clamp(0.0, MAX_AUTOCORRELATION)
    } else {
        0.0
    };
    if rho == 0.0 {
        return Some(trend);
    }
    let inflation = (1.0 + rho) / (1.0 - rho);
    let n = floors.len() as f64;
    let sd = (n * (n - 1.0) * (2.0 * n + 5.0) / 18.0 * inflation).sqrt();
    let s = trend.mann_kendall_s as f64;
    let z = if s > 0.0 {
        (s - 1.0) / sd
    } else if s < 0.0 {
        (s + 1.0) / sd
    } else {
        0.0
    };
    let standard = Normal::standard();
    // The same interval at a confidence whose quantile is sqrt(inflation) times wider.
    let widened =
        1.0 - 2.0 * standard.sf(standard.inverse_cdf(0.5 + CONFIDENCE / 2.0) * inflation.sqrt());
    let interval = stats::trend(floors, widened.clamp(CONFIDENCE, 1.0 - 1e-12))?;
    Some(Trend {
        p_increasing: standard.sf(z),
        low: interval.low,
        high: interval.high,
        ..trend
    })
}

/// The highest floor (lowest sample of each `width` seconds) in `[from, to)`, if any:
/// what the memory held before a time scale's window.
fn highest_floor(points: &[(f64, f64)], from: f64, to: f64, width: f64) -> Option<f64> {
    let first = points.partition_point(|&(t, _)| t < from);
    let mut highest: Option<f64> = None;
    let mut bucket = (f64::NAN, f64::INFINITY);
    for &(t, bytes) in points[first..].iter().take_while(|&&(t, _)| t < to) {
        let k = ((t - from) / width).floor();
        if k != bucket.0 {
            if bucket.1.is_finite() {
                highest = Some(highest.map_or(bucket.1, |h| h.max(bucket.1)));
            }
            bucket = (k, bytes);
        } else {
            bucket.1 = bucket.1.min(bytes);
        }
    }
    if bucket.1.is_finite() {
        highest = Some(highest.map_or(bucket.1, |h| h.max(bucket.1)));
    }
    highest
}

/// The period of a sawtooth in `points`, if they have one: the median time between
/// its drops, a drop being a fall between two samples far larger than the ordinary
/// sample-to-sample change that did not just follow a jump up (the end of a one-sample
/// spike is not a tooth). `None` with fewer than `MIN_TEETH` drops.
fn tooth_period(points: &[(f64, f64)]) -> Option<f64> {
    let changes: Vec<(f64, f64)> = points
        .windows(2)
        .map(|pair| (pair[1].0, pair[1].1 - pair[0].1))
        .collect();
    let mut sizes: Vec<f64> = changes.iter().map(|&(_, change)| change.abs()).collect();
    let ordinary = 1.4826 * stats::median(&mut sizes);
    if ordinary.is_nan() || ordinary <= 0.0 {
        return None;
    }
    let big = TOOTH_DROP * ordinary;
    let drops: Vec<f64> = changes
        .windows(2)
        .filter(|pair| pair[1].1 < -big && pair[0].1 < big)
        .map(|pair| pair[1].0)
        .collect();
    if drops.len() < MIN_TEETH {
        return None;
    }
    let mut gaps: Vec<f64> = drops.windows(2).map(|pair| pair[1] - pair[0]).collect();
    Some(stats::median(&mut gaps))
}

/// The noise of single floors, robustly: from the differences of consecutive floors
/// once the trend is taken out (a step or a drop is one difference, which the median
/// ignores), as a normal standard deviation.
pub(crate) fn floor_noise(floors: &[(f64, f64)], slope: f64) -> f64 {
    let mut steps: Vec<f64> = floors
        .windows(2)
        .map(|pair| ((pair[1].1 - pair[0].1) - slope * (pair[1].0 - pair[0].0)).abs())
        .collect();
    1.4826 * stats::median(&mut steps) / std::f64::consts::SQRT_2
}

/// One line per time scale, for diagnostics.
#[cfg(test)]
pub(crate) fn trace(points: &[(f64, f64)], limit: f64, rule: &LeakRule) -> String {
    let Some(&(now, _)) = points.last() else {
        return "no points".to_owned();
    };
    let mib = |b: f64| b / 1_048_576.0;
    spans(rule.window.as_secs_f64())
        .map(|span| {
            let window = rule.window.as_secs_f64();
            let earlier = if span < window {
                highest_floor(points, now - window, now - span, span / FLOORS as f64)
            } else {
                None
            };
            let tooth = tooth_period(points);
            match measure_scale(points, now, span, earlier, tooth, limit, rule) {
                None => format!("[{:.0}m: -]", span / 60.0),
                Some(s) => format!(
                    "[{:.0}m: {:?} {:.2}MiB/min p={:.1e} lows {:.1}/{:.1}/{:.1} mids {:.1}/{:.1}/{:.1} before {:.1} exh {:?}]",
                    span / 60.0,
                    s.verdict,
                    s.trend.slope * 60.0 / 1_048_576.0,
                    s.trend.p_increasing,
                    mib(s.lows[0]),
                    mib(s.lows[1]),
                    mib(s.lows[2]),
                    mib(s.middles[0]),
                    mib(s.middles[1]),
                    mib(s.middles[2]),
                    mib(earlier.unwrap_or(0.0)),
                    s.exhaustion_in.map(|d| d.as_secs() / 60),
                ),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// How far the peaks are below `limit` now (0 when they are there already), or
/// `None` for an infinite limit.
///
/// The peaks are the floor line now plus the 95th percentile of how far the samples
/// sit above the line: sawtooth teeth and bursts reach the limit before the floor.
fn headroom(window: &[(f64, f64)], now: f64, trend: &Trend, limit: f64) -> Option<f64> {
    if !limit.is_finite() || window.is_empty() {
        return None;
    }
    // The floor line, with times relative to `now`: its value now is the intercept.
    let mut above: Vec<f64> = window
        .iter()
        .map(|&(t, bytes)| bytes - (trend.intercept + trend.slope * (t - now)))
        .collect();
    let rank = ((above.len() - 1) as f64 * PEAK_QUANTILE).round() as usize;
    let (_, &mut excursion, _) = above.select_nth_unstable_by(rank, f64::total_cmp);
    Some((limit - trend.intercept - excursion.max(0.0)).max(0.0))
}

/// The verdict on growth that is or is not significant, sustained, and fast enough
/// (the minimum rate, the limit within the horizon), checked in that order.
pub(crate) fn verdict(growing: bool, sustained: bool, fast_enough: bool) -> Verdict {
    if !growing {
        Verdict::NoSignificantGrowth
    } else if !sustained {
        Verdict::NotSustained
    } else if !fast_enough {
        Verdict::TooSlow
    } else {
        Verdict::Leak
    }
}

/// Time to cover `headroom` at `rate`: `None` unless memory grows.
pub(crate) fn time_to(headroom: Option<f64>, rate: f64) -> Option<Duration> {
    if rate > 0.0 {
        Duration::try_from_secs_f64(headroom? / rate).ok()
    } else {
        None
    }
}

/// Where a leak alert stands in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AlertState {
    Inactive,
    /// The condition has held at every evaluation since `since` (unix seconds).
    Pending {
        since: f64,
    },
    /// The alert fired at `since` (unix seconds).
    Firing {
        since: f64,
    },
}

/// Applies a rule's `for` duration and hysteresis to successive assessments of one
/// series: the same lifecycle in the rules engine and in the benchmark.
///
/// - Inactive → Pending at the first evaluation where the series is leaking.
/// - Pending → Firing once it has been leaking at every evaluation for `for`
///   (immediately when `for` is zero); any evaluation that is not leaking, for
///   whatever reason (insufficient data included), returns it to Inactive.
/// - Firing → Inactive only after it has not been leaking at every evaluation for
///   `for` as well, so an alert does not flap on a borderline series.
#[derive(Clone, Debug)]
pub struct LeakTracker {
    for_s: f64,
    state: AlertState,
    /// While firing: since when the condition has been false.
    clear_since: Option<f64>,
}

impl LeakTracker {
    #[must_use]
    pub fn new(rule: &LeakRule) -> Self {
        Self {
            for_s: rule.for_.as_secs_f64(),
            state: AlertState::Inactive,
            clear_since: None,
        }
    }

    /// Changes the `for` duration from the next observation on: the rules engine's
    /// leak alert holds for the detector's `for` or for the release comparison's.
    pub fn set_for(&mut self, for_: Duration) {
        self.for_s = for_.as_secs_f64();
    }

    /// The state after the latest observation.
    #[must_use]
    pub fn state(&self) -> AlertState {
        self.state
    }

    /// Records the assessment made at `now_s` (unix seconds) and returns the new state.
    pub fn observe(&mut self, now_s: f64, assessment: &Assessment) -> AlertState {
        self.observe_condition(now_s, assessment.leaking)
    }

    /// Records whether the alert's condition held at `now_s` and returns the new
    /// state: the same lifecycle for any condition, which is how the rules engine
    /// runs its threshold alerts too.
    pub fn observe_condition(&mut self, now_s: f64, leaking: bool) -> AlertState {
        self.state = match self.state {
            AlertState::Inactive if leaking && self.for_s <= 0.0 => {
                AlertState::Firing { since: now_s }
            }
            AlertState::Inactive if leaking => AlertState::Pending { since: now_s },
            AlertState::Inactive => AlertState::Inactive,
            AlertState::Pending { since } if leaking => {
                if now_s - since >= self.for_s {
                    AlertState::Firing { since: now_s }
                } else {
                    AlertState::Pending { since }
                }
            }
            AlertState::Pending { .. } => AlertState::Inactive,
            AlertState::Firing { since } => {
                if leaking {
                    self.clear_since = None;
                    AlertState::Firing { since }
                } else {
                    let clear = *self.clear_since.get_or_insert(now_s);
                    if now_s - clear >= self.for_s {
                        self.clear_since = None;
                        AlertState::Inactive
                    } else {
                        AlertState::Firing { since }
                    }
                }
            }
        };
        self.state
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const MIB: f64 = 1_048_576.0;
    /// A recent unix time, so the tests exercise the precision of real timestamps.
    const T0: f64 = 1_764_000_000.0;
    const STEP: f64 = 15.0;

    /// Deterministic noise: a linear congruential generator, uniform in [0, 1).
    struct Noise(u64);

    impl Noise {
        fn next(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }

        /// Upward jitter of in-flight requests plus a little symmetric noise, in bytes.
        fn jitter(&mut self, scale: f64) -> f64 {
            scale * (self.next() + self.next() - 0.6)
        }
    }

    /// `minutes` of samples every 15 s: `shape(seconds since start)` MiB plus jitter.
    fn series(minutes: f64, jitter_mib: f64, shape: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
        let mut noise = Noise(0x5eed);
        let mut points = Vec::new();
        let mut t = 0.0;
        while t <= minutes * 60.0 {
            let bytes = shape(t) * MIB + noise.jitter(jitter_mib * MIB);
            points.push((T0 + t, bytes.max(0.0)));
            t += STEP;
        }
        points
    }

    /// When a tracker evaluating every 15 s (on the rule's window) first fires.
    fn fires(points: &[(f64, f64)], limit_mib: f64, rule: &LeakRule) -> Option<f64> {
        let mut tracker = LeakTracker::new(rule);
        for end in 1..=points.len() {
            let now = points[end - 1].0;
            let from = points[..end].partition_point(|&(t, _)| t < now - rule.window.as_secs_f64());
            let assessment = assess(&points[from..end], limit_mib * MIB, rule);
            if let AlertState::Firing { since } = tracker.observe(now, &assessment) {
                return Some(since - T0);
            }
        }
        None
    }

    fn rule() -> LeakRule {
        LeakRule::default()
    }

    #[test]
    fn a_steady_leak_is_a_leak_with_its_rate_and_forecast() {
        // 300 MiB leaking 8 MiB/min for an hour, limit 1.5 GiB.
        let points = series(60.0, 2.0, |t| 300.0 + 8.0 * t / 60.0);
        let a = assess(&points, 1536.0 * MIB, &rule());
        assert!(a.leaking, "{a:?}");
        assert_eq!(a.verdict, Verdict::Leak);
        let per_min = a.rate_bytes_per_s * 60.0 / MIB;
        assert!((per_min - 8.0).abs() < 0.3, "{per_min}");
        assert!(a.rate_low <= a.rate_bytes_per_s && a.rate_bytes_per_s <= a.rate_high);
        assert!(a.p_value < 0.01, "{a:?}");
        // At 780 MiB now, about (1536 - 780) / 8 = 94 minutes to go.
        let left = a.exhaustion_in.unwrap().as_secs_f64() / 60.0;
        assert!((85.0..100.0).contains(&left), "{left}");
        assert!((a.current_bytes / MIB - 780.0).abs() < 5.0, "{a:?}");
    }

    #[test]
    fn a_fast_leak_is_caught_within_a_quarter_hour_of_its_onset() {
        // Flat for 40 minutes, then 16 MiB/min.
        let points = series(70.0, 2.0, |t| 300.0 + 16.0 * ((t - 2400.0).max(0.0) / 60.0));
        let fired = fires(&points, 2048.0, &rule()).expect("fires");
        let delay_min = (fired - 2400.0) / 60.0;
        assert!((0.0..15.0).contains(&delay_min), "{delay_min}");
    }

    #[test]
    fn a_slow_leak_near_its_limit_is_caught() {
        // 0.5 MiB/min from the start, 1 to 2 hours from the limit: found by the long
        // scales.
        let points = series(60.0, 1.0, |t| 200.0 + 0.5 * t / 60.0);
        let fired = fires(&points, 260.0, &rule()).expect("fires");
        assert!(fired < 60.0 * 60.0, "{fired}");
    }

    #[test]
    fn a_leak_beyond_the_horizon_is_too_slow() {
        // 1 MiB/min with 2 GiB to go: 34 hours away.
        let points = series(60.0, 1.0, |t| 300.0 + t / 60.0);
        let a = assess(&points, 2400.0 * MIB, &rule());
        assert_eq!(a.verdict, Verdict::TooSlow, "{a:?}");
        assert!(!a.leaking);
        assert!(a.exhaustion_in.unwrap() > Duration::from_secs(30 * 3600));
        // The same leak towards an unknown limit cannot be forecast.
        let a = assess(&points, f64::INFINITY, &rule());
        assert_eq!(a.verdict, Verdict::TooSlow, "{a:?}");
        assert_eq!(a.exhaustion_in, None);
    }

    #[test]
    fn growth_below_the_minimum_rate_is_too_slow() {
        let points = series(60.0, 0.05, |t| 300.0 + 0.02 * t / 60.0);
        let slow = LeakRule {
            min_rate_bytes_per_s: 1024.0,
            ..rule()
        };
        // 0.02 MiB/min is 350 B/s; the limit is right above it.
        let a = assess(&points, 302.0 * MIB, &slow);
        assert_ne!(a.verdict, Verdict::Leak, "{a:?}");
    }

    #[test]
    fn noise_alone_never_fires() {
        let points = series(240.0, 4.0, |_| 300.0);
        assert_eq!(fires(&points, 330.0, &rule()), None);
    }

    #[test]
    fn load_wander_never_fires() {
        // Memory following load: a slow wave of ±6 MiB every 40 minutes.
        let points = series(240.0, 1.0, |t| {
            300.0 + 6.0 * (std::f64::consts::TAU * t / 2400.0).sin()
        });
        assert_eq!(fires(&points, 340.0, &rule()), None);
    }

    #[test]
    fn a_warm_up_that_levels_off_never_fires() {
        // From 120 to 300 MiB with a 4-minute time constant, from the process start.
        let points = series(120.0, 2.0, |t| 300.0 - 180.0 * (-t / 240.0).exp());
        assert_eq!(fires(&points, 360.0, &rule()), None);
    }

    #[test]
    fn a_cache_filling_to_its_bound_never_fires() {
        // After 30 minutes, a 100 MiB cache fills with a 5-minute time constant.
        let points = series(150.0, 2.0, |t| {
            300.0
                + if t < 1800.0 {
                    0.0
                } else {
                    100.0 * (1.0 - (-(t - 1800.0) / 300.0).exp())
                }
        });
        assert_eq!(fires(&points, 480.0, &rule()), None);
    }

    #[test]
    fn a_gc_sawtooth_never_fires() {
        // Teeth of 3 minutes, 25 % of the heap, on a flat floor.
        let points = series(240.0, 2.0, |t| 300.0 + 75.0 * (t % 180.0) / 180.0);
        assert_eq!(fires(&points, 450.0, &rule()), None);
        // Teeth of 5 minutes, 30 %.
        let points = series(240.0, 2.0, |t| 300.0 + 90.0 * (t % 300.0) / 300.0);
        assert_eq!(fires(&points, 450.0, &rule()), None);
    }

    #[test]
    fn teeth_are_measured_and_spikes_and_noise_are_not_teeth() {
        // Teeth of 5 minutes, 30 % of the heap: the period is found.
        let teeth = series(60.0, 2.0, |t| 300.0 + 90.0 * (t % 300.0) / 300.0);
        let period = tooth_period(&teeth).unwrap();
        assert!((period - 300.0).abs() <= STEP, "{period}");
        // Noise alone, and noise with a one-sample spike every 6 minutes (its fall
        // follows its jump), have no teeth.
        assert_eq!(tooth_period(&series(60.0, 2.0, |_| 300.0)), None);
        let spiky = series(60.0, 2.0, |t| {
            300.0 + if t % 360.0 < STEP { 30.0 } else { 0.0 }
        });
        assert_eq!(tooth_period(&spiky), None);
        // Fewer than four drops are no sawtooth.
        let few = series(60.0, 2.0, |t| 300.0 + 90.0 * (t % 1200.0) / 1200.0);
        assert_eq!(tooth_period(&few), None);
    }

    #[test]
    fn a_sawtooth_on_a_leak_is_still_a_leak() {
        let points = series(90.0, 2.0, |t| {
            300.0 + 6.0 * t / 60.0 + 60.0 * (t % 120.0) / 120.0
        });
        assert!(fires(&points, 1200.0, &rule()).is_some());
    }

    #[test]
    fn a_one_off_step_never_fires() {
        // +60 MiB at once after 40 minutes.
        let points = series(180.0, 2.0, |t| if t < 2400.0 { 300.0 } else { 360.0 });
        assert_eq!(fires(&points, 420.0, &rule()), None);
    }

    #[test]
    fn a_restart_never_fires() {
        // At 60 minutes memory drops to 150 MiB and warms up again (3-minute constant).
        let points = series(180.0, 2.0, |t| {
            if t < 3600.0 {
                300.0
            } else {
                300.0 - 150.0 * (-(t - 3600.0) / 180.0).exp()
            }
        });
        assert_eq!(fires(&points, 380.0, &rule()), None);
    }

    #[test]
    fn unreadable_input_is_insufficient_data() {
        let good = series(60.0, 1.0, |t| 300.0 + 8.0 * t / 60.0);
        let limit = 1536.0 * MIB;
        let insufficient = |points: &[(f64, f64)], limit: f64, rule: &LeakRule| {
            let a = assess(points, limit, rule);
            assert_eq!(a.verdict, Verdict::InsufficientData, "{a:?}");
            assert!(!a.leaking);
        };
        insufficient(&[], limit, &rule());
        insufficient(&good[..1], limit, &rule());
        insufficient(&good[..20], limit, &rule()); // five minutes: no scale covered
        let mut nan = good.clone();
        nan[100].1 = f64::NAN;
        insufficient(&nan, limit, &rule());
        let mut infinite_time = good.clone();
        infinite_time[100].0 = f64::INFINITY;
        insufficient(&infinite_time, limit, &rule());
        let mut negative = good.clone();
        negative[100].1 = -1.0;
        insufficient(&negative, limit, &rule());
        let mut unsorted = good.clone();
        unsorted.swap(10, 11);
        insufficient(&unsorted, limit, &rule());
        let mut duplicate = good.clone();
        duplicate[11].0 = duplicate[10].0;
        insufficient(&duplicate, limit, &rule());
        insufficient(&good, 0.0, &rule());
        insufficient(&good, f64::NAN, &rule());
        insufficient(&good, -5.0, &rule());
        let zero_window = LeakRule {
            window: Duration::ZERO,
            ..rule()
        };
        insufficient(&good, limit, &zero_window);
        let bad_significance = LeakRule {
            significance: f64::NAN,
            ..rule()
        };
        insufficient(&good, limit, &bad_significance);
        // The same points, readable, are a leak.
        assert!(assess(&good, limit, &rule()).leaking);
    }

    #[test]
    fn flat_and_tied_input_does_not_panic() {
        let flat: Vec<(f64, f64)> = (0..400).map(|i| (T0 + f64::from(i) * 5.0, 1e8)).collect();
        let a = assess(&flat, 2e8, &rule());
        assert_eq!(a.verdict, Verdict::NoSignificantGrowth, "{a:?}");
        let zeros: Vec<(f64, f64)> = (0..400).map(|i| (f64::from(i), 0.0)).collect();
        assert!(!assess(&zeros, 1.0, &rule()).leaking);
        let huge: Vec<(f64, f64)> = (0..400)
            .map(|i| (f64::from(i) * 10.0, f64::MAX / 2.0))
            .collect();
        assert!(!assess(&huge, f64::MAX, &rule()).leaking);
    }

    fn verdict(leaking: bool) -> Assessment {
        Assessment {
            leaking,
            verdict: if leaking {
                Verdict::Leak
            } else {
                Verdict::NoSignificantGrowth
            },
            ..insufficient(0.0)
        }
    }

    #[test]
    fn the_tracker_fires_after_for_and_resolves_after_for_of_quiet() {
        let rule = LeakRule {
            for_: Duration::from_secs(60),
            ..rule()
        };
        let mut tracker = LeakTracker::new(&rule);
        assert_eq!(tracker.observe(0.0, &verdict(false)), AlertState::Inactive);
        assert_eq!(
            tracker.observe(5.0, &verdict(true)),
            AlertState::Pending { since: 5.0 }
        );
        assert_eq!(
            tracker.observe(30.0, &verdict(true)),
            AlertState::Pending { since: 5.0 }
        );
        assert_eq!(
            tracker.observe(65.0, &verdict(true)),
            AlertState::Firing { since: 65.0 }
        );
        // A short lapse does not resolve it...
        assert_eq!(
            tracker.observe(70.0, &verdict(false)),
            AlertState::Firing { since: 65.0 }
        );
        assert_eq!(
            tracker.observe(100.0, &verdict(true)),
            AlertState::Firing { since: 65.0 }
        );
        // ... a full `for` of quiet does.
        assert_eq!(
            tracker.observe(105.0, &verdict(false)),
            AlertState::Firing { since: 65.0 }
        );
        assert_eq!(
            tracker.observe(150.0, &verdict(false)),
            AlertState::Firing { since: 65.0 }
        );
        assert_eq!(
            tracker.observe(165.0, &verdict(false)),
            AlertState::Inactive
        );
        assert_eq!(tracker.state(), AlertState::Inactive);
    }

    #[test]
    fn a_lapse_while_pending_starts_over() {
        let rule = LeakRule {
            for_: Duration::from_secs(60),
            ..rule()
        };
        let mut tracker = LeakTracker::new(&rule);
        tracker.observe(0.0, &verdict(true));
        tracker.observe(50.0, &verdict(true));
        assert_eq!(tracker.observe(55.0, &verdict(false)), AlertState::Inactive);
        assert_eq!(
            tracker.observe(60.0, &verdict(true)),
            AlertState::Pending { since: 60.0 }
        );
        assert_eq!(
            tracker.observe(110.0, &verdict(true)),
            AlertState::Pending { since: 60.0 }
        );
        assert_eq!(
            tracker.observe(120.0, &verdict(true)),
            AlertState::Firing { since: 120.0 }
        );
    }

    #[test]
    fn a_zero_for_fires_and_resolves_at_once() {
        let rule = LeakRule {
            for_: Duration::ZERO,
            ..rule()
        };
        let mut tracker = LeakTracker::new(&rule);
        assert_eq!(
            tracker.observe(1.0, &verdict(true)),
            AlertState::Firing { since: 1.0 }
        );
        assert_eq!(tracker.observe(2.0, &verdict(false)), AlertState::Inactive);
    }

    #[test]
    fn a_rule_reads_humantime_and_for_from_toml() {
        let rule: LeakRule =
            toml::from_str("window = \"30m\"\nfor = \"5m\"\nsignificance = 0.05").unwrap();
        assert_eq!(rule.window, Duration::from_secs(1800));
        assert_eq!(rule.for_, Duration::from_secs(300));
        assert_eq!(rule.significance, 0.05);
        assert_eq!(rule.horizon, LeakRule::default().horizon);
        let json = serde_json::to_value(&rule).unwrap();
        assert_eq!(json["for"], "5m");
        assert_eq!(json["horizon"], "2h");
        assert!(rule.validate().is_ok());
        let bad = LeakRule {
            significance: 1.5,
            ..rule
        };
        assert!(bad.validate().unwrap_err().contains("significance"));
    }

    #[test]
    fn an_assessment_serialises_and_summarises() {
        let points = series(60.0, 2.0, |t| 300.0 + 8.0 * t / 60.0);
        let a = assess(&points, 1536.0 * MIB, &rule());
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["verdict"], "leak");
        assert!(json["exhaustion_in"].is_string(), "{json}");
        let summary = a.summary();
        assert!(summary.starts_with("leak: floor grows 7.9"), "{summary}");
        assert!(summary.contains("limit reached in about"), "{summary}");
    }
}
