//! Uptime per component over the last 90 days, from its recorded state changes.
//!
//! The convention is Statuspage's: a minute in `major_outage` counts fully as
//! down, a minute in `partial_outage` counts as 30% down, and `degraded_performance`
//! and `under_maintenance` count as up. Uptime is `1 − down / observed`, where
//! observed time starts when the component was first recorded (days before that
//! show as "no data", not as up). Days are UTC days; today counts up to now.

use warden_store::{ComponentChange, StatusComponent};

use crate::model::ComponentStatus;

/// How many days the page shows.
pub const DAYS: usize = 90;

const DAY_MS: i64 = 86_400_000;

/// One UTC day of one component.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Day {
    /// Midnight UTC that starts it (unix ms).
    pub start_ms: i64,
    /// How long the component was recorded that day (ms).
    pub observed_ms: i64,
    /// Weighted downtime (ms): major outage fully, partial outage at 30%.
    pub down_ms: f64,
    /// Time in each state (ms).
    pub major_ms: i64,
    /// See [`Day::major_ms`].
    pub partial_ms: i64,
    /// See [`Day::major_ms`].
    pub degraded_ms: i64,
    /// See [`Day::major_ms`].
    pub maintenance_ms: i64,
}

impl Day {
    /// Uptime of the day as a fraction, `None` when nothing was observed.
    #[must_use]
    pub fn uptime(&self) -> Option<f64> {
        (self.observed_ms > 0).then(|| 1.0 - self.down_ms / self.observed_ms as f64)
    }
}

/// A component's days, oldest first, and its uptime over all of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Uptime {
    /// [`DAYS`] days ending with today.
    pub days: Vec<Day>,
    /// Uptime over the whole window as a fraction; `None` before any observation.
    pub fraction: Option<f64>,
}

impl Uptime {
    /// `99.95%`: truncated, not rounded, so any downtime shows below 100%.
    #[must_use]
    pub fn percent_text(&self) -> Option<String> {
        self.fraction.map(percent)
    }
}

/// A fraction as a percentage with two decimals, truncated.
#[must_use]
pub fn percent(fraction: f64) -> String {
    let hundredths = (fraction * 10_000.0).floor().clamp(0.0, 10_000.0);
    format!("{:.2}%", hundredths / 100.0)
}

/// The uptime of `component` as of `now_ms`; `changes` may hold other components'
/// changes too and must be oldest first.
#[must_use]
pub fn compute(component: &StatusComponent, changes: &[ComponentChange], now_ms: i64) -> Uptime {
    let today = now_ms - now_ms.rem_euclid(DAY_MS);
    let window_start = today - (DAYS as i64 - 1) * DAY_MS;
    let mut days: Vec<Day> = (0..DAYS as i64)
        .map(|i| Day {
            start_ms: window_start + i * DAY_MS,
            ..Day::default()
        })
        .collect();
    // Segments [from, to) in one state, from the component's own changes.
    let own: Vec<&ComponentChange> = changes
        .iter()
        .filter(|c| c.component_id == component.id)
        .collect();
    for (index, change) in own.iter().enumerate() {
        let from = change.at_ms.max(window_start);
        let to = own
            .get(index + 1)
            .map_or(now_ms, |next| next.at_ms)
            .min(now_ms);
        if to <= from {
            continue;
        }
        let status = change
            .new_status
            .parse::<ComponentStatus>()
            .unwrap_or(ComponentStatus::Operational);
        add(&mut days, window_start, from, to, status);
    }
    let observed: i64 = days.iter().map(|d| d.observed_ms).sum();
    let down: f64 = days.iter().map(|d| d.down_ms).sum();
    Uptime {
        days,
        fraction: (observed > 0).then(|| 1.0 - down / observed as f64),
    }
}

/// Spreads the segment `[from, to)` in `status` over the days it touches.
fn add(days: &mut [Day], window_start: i64, from: i64, to: i64, status: ComponentStatus) {
    let first = usize::try_from((from - window_start) / DAY_MS).unwrap_or(0);
    for day in days.iter_mut().skip(first) {
        let end = day.start_ms + DAY_MS;
        if day.start_ms >= to {
            break;
        }
        let overlap = to.min(end) - from.max(day.start_ms);
        if overlap <= 0 {
            continue;
        }
        day.observed_ms += overlap;
        day.down_ms += status.downtime_weight() * overlap as f64;
        match status {
            ComponentStatus::MajorOutage => day.major_ms += overlap,
            ComponentStatus::PartialOutage => day.partial_ms += overlap,
            ComponentStatus::DegradedPerformance => day.degraded_ms += overlap,
            ComponentStatus::UnderMaintenance => day.maintenance_ms += overlap,
            ComponentStatus::Operational => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const MINUTE: i64 = 60_000;
    /// Noon on some UTC day.
    const NOW: i64 = 19_000 * DAY_MS + 12 * 60 * MINUTE;

    fn component() -> StatusComponent {
        StatusComponent {
            id: "api".into(),
            name: "API".into(),
            description: None,
            group_id: None,
            is_group: false,
            position: 1,
            status: "operational".into(),
            showcase: true,
            only_show_if_degraded: false,
            archived: false,
            created_ms: 0,
            updated_ms: 0,
        }
    }

    fn change(at_ms: i64, status: &str) -> ComponentChange {
        ComponentChange {
            component_id: "api".into(),
            at_ms,
            old_status: String::new(),
            new_status: status.into(),
            incident_id: None,
        }
    }

    #[test]
    fn a_105_minute_outage_counts_fully_and_a_partial_one_at_30_percent() {
        let yesterday = NOW - DAY_MS - 12 * 60 * MINUTE; // midnight starting yesterday
        let changes = [
            change(0, "operational"),
            change(yesterday + 13 * 60 * MINUTE, "major_outage"),
            change(yesterday + 13 * 60 * MINUTE + 105 * MINUTE, "operational"),
            change(NOW - 100 * MINUTE, "partial_outage"),
            change(NOW - 50 * MINUTE, "degraded_performance"),
            change(NOW - 10 * MINUTE, "under_maintenance"),
        ];
        let uptime = compute(&component(), &changes, NOW);
        assert_eq!(uptime.days.len(), DAYS);
        let day = uptime.days[DAYS - 2];
        assert_eq!(day.major_ms, 105 * MINUTE);
        assert_eq!(day.observed_ms, DAY_MS);
        let expected = 1.0 - 105.0 / 1440.0;
        assert!((day.uptime().unwrap() - expected).abs() < 1e-9);
        let today = uptime.days[DAYS - 1];
        assert_eq!(
            today.observed_ms,
            12 * 60 * MINUTE,
            "today counts up to now"
        );
        assert!((today.down_ms - 0.3 * 50.0 * MINUTE as f64).abs() < 1e-6);
        assert_eq!(today.degraded_ms, 40 * MINUTE);
        assert_eq!(today.maintenance_ms, 10 * MINUTE);
        let observed = (DAYS as f64 - 0.5) * DAY_MS as f64;
        let down = 105.0 * MINUTE as f64 + 0.3 * 50.0 * MINUTE as f64;
        assert!((uptime.fraction.unwrap() - (1.0 - down / observed)).abs() < 1e-12);
        assert_eq!(uptime.percent_text().unwrap(), "99.90%");
    }

    #[test]
    fn days_before_the_component_existed_are_not_counted() {
        let changes = [change(NOW - 30 * 60 * MINUTE, "operational")];
        let uptime = compute(&component(), &changes, NOW);
        assert!(uptime.days[..DAYS - 2].iter().all(|d| d.uptime().is_none()));
        assert_eq!(uptime.days[DAYS - 2].observed_ms, 18 * 60 * MINUTE);
        assert_eq!(uptime.percent_text().unwrap(), "100.00%");
        assert_eq!(compute(&component(), &[], NOW).fraction, None);
    }

    #[test]
    fn percentages_truncate() {
        assert_eq!(percent(0.999_99), "99.99%");
        assert_eq!(percent(1.0), "100.00%");
        assert_eq!(percent(0.0), "0.00%");
    }
}
