//! Robust trend statistics for leak verdicts.
//!
//! The memory test reads the server's heap at quiet points between rounds of the same
//! workload, giving a handful (typically 6–20) of points `(requests so far, heap bytes)`.
//! Whether the heap grows with requests is a question about the trend of those points,
//! and ordinary least squares is the wrong tool for it: one garbage-collection-like dip
//! or one allocator hiccup moves a least-squares slope a long way, and its confidence
//! interval assumes normal errors we do not have.
//!
//! So [`trend`] uses rank-based statistics that one wild point cannot drag:
//!
//! - the Theil–Sen slope (the median of all pairwise slopes) with Sen's (1968)
//!   distribution-free confidence interval, so a verdict can say "at least this many
//!   bytes per request";
//! - the Mann–Kendall test, whose one-sided p-value says how likely an upward
//!   ordering this strong would be if memory did not grow at all.

use serde::Serialize;
use statrs::distribution::{ContinuousCDF, Normal};

/// A trend fitted to (x, y) points.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Trend {
    /// Theil–Sen slope: median of pairwise slopes (y units per x unit).
    pub slope: f64,
    /// Lower bound of the two-sided confidence interval of the slope (Sen 1968, from the
    /// Mann–Kendall variance).
    pub low: f64,
    /// Upper bound of the two-sided confidence interval of the slope.
    pub high: f64,
    /// Intercept: median of `y_i - slope * x_i`.
    pub intercept: f64,
    /// Mann–Kendall S statistic: concordant minus discordant pairs.
    pub mann_kendall_s: i64,
    /// One-sided p-value of S for an increasing trend (normal approximation with
    /// continuity correction and tie correction).
    pub p_increasing: f64,
    /// How many points the trend was fitted to.
    pub points: usize,
}

/// Fits a [`Trend`] to `points` with a two-sided slope interval at `confidence`
/// (for example `0.95`).
///
/// Returns `None` when the data cannot support a trend: fewer than 3 points, a
/// non-finite coordinate, all x equal, or a `confidence` outside `(0, 1)`.
///
/// The points need not be sorted. Pairs with equal x have no slope and count as
/// neither concordant nor discordant; the variance of S is corrected for ties in y
/// only, because x (cumulative requests) is expected to be strictly increasing, and
/// leaving x ties uncorrected only makes the interval wider and the p-value larger.
#[must_use]
pub fn trend(points: &[(f64, f64)], confidence: f64) -> Option<Trend> {
    let n = points.len();
    if n < 3
        || !(confidence > 0.0 && confidence < 1.0)
        || points.iter().any(|(x, y)| !x.is_finite() || !y.is_finite())
    {
        return None;
    }

    let mut slopes = Vec::with_capacity(n * (n - 1) / 2);
    let mut s: i64 = 0;
    for (i, &(xi, yi)) in points.iter().enumerate() {
        for &(xj, yj) in &points[i + 1..] {
            let dx = xj - xi;
            let dy = yj - yi;
            if dx != 0.0 {
                slopes.push(dy / dx);
            }
            s += sign(dx) * sign(dy);
        }
    }
    if slopes.is_empty() {
        return None;
    }
    slopes.sort_by(f64::total_cmp);
    let slope = median_of_sorted(&slopes);

    let mut residuals: Vec<f64> = points.iter().map(|&(x, y)| y - slope * x).collect();
    let intercept = median(&mut residuals);

    let variance = mann_kendall_variance(points);
    let sd = variance.sqrt();
    let standard = Normal::standard();

    let p_increasing = if sd > 0.0 {
        // Continuity correction: S moves in steps of 2, so shrink it by 1 towards 0.
        let z = match s {
            0 => 0.0,
            s if s > 0 => (s - 1) as f64 / sd,
            s => (s + 1) as f64 / sd,
        };
        standard.sf(z)
    } else {
        // Every y is equal: no ordering at all, so no evidence either way.
        0.5
    };

    // Sen (1968): the interval runs between the slopes of rank M1 and M2 + 1, where
    // M1 = (N - C) / 2, M2 = (N + C) / 2 and C = z_{1-α/2} * sqrt(Var(S)). The lower
    // rank is rounded down and the upper one mirrors it (rank N + 1 - M1, i.e. M2 + 1
    // rounded up), so rounding only ever widens the interval.
    let count = slopes.len();
    let alpha = 1.0 - confidence;
    let c = standard.inverse_cdf(1.0 - alpha / 2.0) * sd;
    let m1 = (count as f64 - c) / 2.0;
    let low_rank = clamp_rank(m1.floor(), count);
    let high_rank = count + 1 - low_rank;
    let low = slopes[low_rank - 1];
    let high = slopes[high_rank - 1];

    Some(Trend {
        slope,
        low,
        high,
        intercept,
        mann_kendall_s: s,
        p_increasing,
        points: n,
    })
}

/// The median of `values`, sorting them in place; the mean of the middle two for an
/// even count, and `0.0` for an empty slice.
///
/// NaN sorts after every number (IEEE total order), so it never panics.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    median_of_sorted(values)
}

/// The nearest-rank `q` quantile of `values` (`0 < q <= 1`), sorting them in
/// place; `0.0` for an empty slice.
pub fn quantile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    if values.is_empty() {
        return 0.0;
    }
    let rank = (q * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

fn median_of_sorted(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// Var(S) = [n(n-1)(2n+5) - Σ t(t-1)(2t+5)] / 18, summed over groups of t equal y.
fn mann_kendall_variance(points: &[(f64, f64)]) -> f64 {
    let term = |t: usize| {
        let t = t as f64;
        t * (t - 1.0) * (2.0 * t + 5.0)
    };
    let mut ys: Vec<f64> = points.iter().map(|&(_, y)| y).collect();
    ys.sort_by(f64::total_cmp);
    let ties: f64 = ys
        .chunk_by(|a, b| a == b)
        .map(<[f64]>::len)
        .filter(|&t| t > 1)
        .map(term)
        .sum();
    ((term(points.len()) - ties) / 18.0).max(0.0)
}

fn sign(v: f64) -> i64 {
    if v > 0.0 {
        1
    } else if v < 0.0 {
        -1
    } else {
        0
    }
}

/// A 1-based rank from a possibly out-of-range float, clamped to `1..=count`.
fn clamp_rank(rank: f64, count: usize) -> usize {
    if rank < 1.0 {
        1
    } else if rank >= count as f64 {
        count
    } else {
        // In range 1..count, so the conversion is exact.
        rank as usize
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn line(n: usize, slope: f64, intercept: f64) -> Vec<(f64, f64)> {
        (0..n)
            .map(|i| {
                let x = (i as f64 + 1.0) * 1000.0;
                (x, intercept + slope * x)
            })
            .collect()
    }

    /// A fixed, deterministic noise in [-1, 1): a small linear congruential generator.
    fn pseudo_noise(n: usize) -> Vec<f64> {
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
            })
            .collect()
    }

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance
    }

    #[test]
    fn a_perfect_line_gives_its_exact_slope_and_intercept() {
        let t = trend(&line(8, 3.5, 100.0), 0.95).unwrap();
        assert!(close(t.slope, 3.5, 1e-12), "{t:?}");
        assert!(close(t.intercept, 100.0, 1e-6), "{t:?}");
        assert!(
            close(t.low, 3.5, 1e-12) && close(t.high, 3.5, 1e-12),
            "{t:?}"
        );
        assert_eq!(t.mann_kendall_s, 28); // all 8*7/2 pairs concordant
        assert_eq!(t.points, 8);
    }

    #[test]
    fn one_wild_outlier_does_not_move_the_slope() {
        let mut points = line(10, 2.0, 5.0);
        points[6].1 += 1e6;
        let t = trend(&points, 0.95).unwrap();
        assert!(close(t.slope, 2.0, 0.02), "{t:?}");
        assert!(close(t.intercept, 5.0, 1.0), "{t:?}");
    }

    #[test]
    fn the_interval_contains_the_true_slope_on_a_noisy_line() {
        let noise = pseudo_noise(15);
        let points: Vec<(f64, f64)> = line(15, 40.0, 1e6)
            .into_iter()
            .zip(noise)
            .map(|((x, y), e)| (x, y + e * 20_000.0))
            .collect();
        let t = trend(&points, 0.95).unwrap();
        assert!(t.low <= 40.0 && 40.0 <= t.high, "{t:?}");
        assert!(t.low < t.slope && t.slope < t.high, "{t:?}");
        // A narrower confidence gives a narrower (or equal) interval.
        let narrow = trend(&points, 0.5).unwrap();
        assert!(narrow.low >= t.low && narrow.high <= t.high, "{narrow:?}");
    }

    #[test]
    fn a_clear_increasing_line_is_significant() {
        let noise = pseudo_noise(10);
        let points: Vec<(f64, f64)> = line(10, 10.0, 5e5)
            .into_iter()
            .zip(noise)
            .map(|((x, y), e)| (x, y + e * 1000.0))
            .collect();
        let t = trend(&points, 0.95).unwrap();
        assert!(t.p_increasing < 0.01, "{t:?}");
    }

    #[test]
    fn alternating_flat_noise_is_not_significant() {
        let points: Vec<(f64, f64)> = (0..10)
            .map(|i| {
                let y = if i % 2 == 0 { 1000.0 } else { 1010.0 } + f64::from(i % 3);
                (f64::from(i) * 100.0, y)
            })
            .collect();
        let t = trend(&points, 0.95).unwrap();
        assert!(t.p_increasing > 0.2, "{t:?}");
    }

    #[test]
    fn a_flat_series_with_ties_has_zero_slope() {
        let points: Vec<(f64, f64)> = (0..8).map(|i| (f64::from(i), 4096.0)).collect();
        let t = trend(&points, 0.95).unwrap();
        assert_eq!(t.slope, 0.0);
        assert_eq!(t.low, 0.0);
        assert_eq!(t.high, 0.0);
        assert_eq!(t.mann_kendall_s, 0);
        assert!(close(t.p_increasing, 0.5, 1e-12), "{t:?}");
        assert!(close(t.intercept, 4096.0, 1e-12), "{t:?}");
    }

    #[test]
    fn too_few_points_or_bad_values_give_none() {
        assert_eq!(trend(&[], 0.95), None);
        assert_eq!(trend(&[(1.0, 1.0), (2.0, 2.0)], 0.95), None);
        assert_eq!(
            trend(&[(1.0, 1.0), (2.0, f64::NAN), (3.0, 3.0)], 0.95),
            None
        );
        assert_eq!(
            trend(&[(1.0, 1.0), (f64::INFINITY, 2.0), (3.0, 3.0)], 0.95),
            None
        );
        assert_eq!(trend(&[(1.0, 1.0), (1.0, 2.0), (1.0, 3.0)], 0.95), None);
        assert_eq!(trend(&line(5, 1.0, 0.0), 1.0), None);
        assert_eq!(trend(&line(5, 1.0, 0.0), 0.0), None);
    }

    #[test]
    fn pairs_with_equal_x_are_skipped() {
        let points = [(1.0, 1.0), (1.0, 50.0), (2.0, 2.0), (3.0, 3.0)];
        let t = trend(&points, 0.95).unwrap();
        // Slopes: (1,1)-(2,2)=1, (1,1)-(3,3)=1, (1,50)-(2,2)=-48, (1,50)-(3,3)=-23.5,
        // (2,2)-(3,3)=1 → sorted [-48, -23.5, 1, 1, 1], median 1.
        assert_eq!(t.slope, 1.0);
    }

    /// Worked by hand: x = 1..5, y = [1, 3, 2, 5, 4].
    ///
    /// S, pair by pair (sign of y_j - y_i for i < j):
    ///   from y=1: 3+ 2+ 5+ 4+ → +4;  from y=3: 2- 5+ 4+ → +1;
    ///   from y=2: 5+ 4+ → +2;        from y=5: 4- → -1;          S = 6.
    /// Var(S) = 5·4·15/18 = 16.667, sd = 4.0825; Z = (6 - 1)/4.0825 = 1.2247,
    /// p = 1 - Φ(1.2247) = 0.1103.
    /// Pairwise slopes, sorted: -1, -1, 1/3, 1/2, 3/4, 1, 1, 4/3, 2, 3 (N = 10);
    /// median (3/4 + 1)/2 = 0.875.
    /// Intercepts y - 0.875x: 0.125, 1.25, -0.625, 1.5, -0.375 → median 0.125.
    /// 90% interval: C = 1.6449 · 4.0825 = 6.715, M1 = (10 - 6.715)/2 = 1.64 → rank 1
    /// (-1); M2 + 1 = 9.36 → rank 10 (3).
    #[test]
    fn matches_a_small_example_worked_by_hand() {
        let points = [(1.0, 1.0), (2.0, 3.0), (3.0, 2.0), (4.0, 5.0), (5.0, 4.0)];
        let t = trend(&points, 0.90).unwrap();
        assert_eq!(t.mann_kendall_s, 6);
        assert!(close(t.p_increasing, 0.1103, 1e-4), "{t:?}");
        assert!(close(t.slope, 0.875, 1e-12), "{t:?}");
        assert!(close(t.intercept, 0.125, 1e-12), "{t:?}");
        assert_eq!(t.low, -1.0);
        assert_eq!(t.high, 3.0);
        // At 50%: C = 0.6745 · 4.0825 = 2.754, M1 = 3.62 → rank 3 (1/3), upper rank 8 (4/3).
        let half = trend(&points, 0.5).unwrap();
        assert!(close(half.low, 1.0 / 3.0, 1e-12), "{half:?}");
        assert!(close(half.high, 4.0 / 3.0, 1e-12), "{half:?}");
    }

    #[test]
    fn ties_in_y_shrink_the_variance() {
        // y = [1, 1, 2, 2, 3]: two tie groups of 2 → Var = (5·4·15 - 2·2·1·9)/18 = 264/18.
        let points = [(1.0, 1.0), (2.0, 1.0), (3.0, 2.0), (4.0, 2.0), (5.0, 3.0)];
        assert!(close(mann_kendall_variance(&points), 264.0 / 18.0, 1e-12));
    }

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let mut values: Vec<f64> = (1..=20).map(f64::from).collect();
        assert!((quantile(&mut values, 0.9) - 18.0).abs() < 1e-9);
        assert!((quantile(&mut values, 1.0) - 20.0).abs() < 1e-9);
        assert!((quantile(&mut values, 0.0) - 1.0).abs() < 1e-9);
        assert!(quantile(&mut [], 0.9).abs() < 1e-9);
    }

    #[test]
    fn median_handles_odd_even_and_empty() {
        assert_eq!(median(&mut []), 0.0);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }
}
