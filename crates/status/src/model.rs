//! The vocabulary of the status page, in Statuspage's words: what state a component
//! is in, where an incident or a maintenance stands, how bad an incident is, and the
//! page's overall indicator.
//!
//! Each is an enum that serializes to Statuspage's exact string, so the JSON,
//! the store and the command line all say `major_outage`, never something close.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Defines a string enum with its wire names, `as_str`, `ALL`, `Display` and a
/// `FromStr` whose error lists what is accepted.
macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            /// Every value, in order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The wire name, e.g. `major_outage`.
            #[must_use]
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(text: &str) -> Result<Self, String> {
                let wanted = text.trim();
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str().eq_ignore_ascii_case(wanted))
                    .ok_or_else(|| {
                        format!(
                            "unknown {} {text:?}: use one of {}",
                            $what,
                            Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
                        )
                    })
            }
        }
    };
}

wire_enum! {
    /// The state of one component.
    ComponentStatus, "component status" {
        /// Working normally.
        Operational = "operational",
        /// Working, but slower or less reliably than usual. Not downtime.
        DegradedPerformance = "degraded_performance",
        /// Down for some users or some requests: 30% downtime.
        PartialOutage = "partial_outage",
        /// Down: full downtime.
        MajorOutage = "major_outage",
        /// Deliberately changed in a scheduled window. Not downtime.
        UnderMaintenance = "under_maintenance",
    }
}

impl ComponentStatus {
    /// How much a minute in this state counts as down, Statuspage's convention: a
    /// major outage fully, a partial outage at 30%, everything else not at all.
    #[must_use]
    pub fn downtime_weight(self) -> f64 {
        match self {
            Self::MajorOutage => 1.0,
            Self::PartialOutage => 0.3,
            Self::Operational | Self::DegradedPerformance | Self::UnderMaintenance => 0.0,
        }
    }

    /// How it raises the page's indicator.
    #[must_use]
    pub fn indicator(self) -> Indicator {
        match self {
            Self::Operational => Indicator::None,
            Self::UnderMaintenance => Indicator::Maintenance,
            Self::DegradedPerformance => Indicator::Minor,
            Self::PartialOutage => Indicator::Major,
            Self::MajorOutage => Indicator::Critical,
        }
    }

    /// Severity order for a group: the worst child wins; maintenance sits between
    /// operational and degraded.
    #[must_use]
    pub fn severity(self) -> u8 {
        match self {
            Self::Operational => 0,
            Self::UnderMaintenance => 1,
            Self::DegradedPerformance => 2,
            Self::PartialOutage => 3,
            Self::MajorOutage => 4,
        }
    }

    /// How users read it.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Operational => "Operational",
            Self::DegradedPerformance => "Degraded performance",
            Self::PartialOutage => "Partial outage",
            Self::MajorOutage => "Major outage",
            Self::UnderMaintenance => "Under maintenance",
        }
    }
}

wire_enum! {
    /// Where an incident stands. `postmortem` follows `resolved` once the review is
    /// published.
    IncidentStatus, "incident status" {
        /// Something is wrong; the cause is not known yet.
        Investigating = "investigating",
        /// The cause is known; a fix is under way.
        Identified = "identified",
        /// A fix is in place; watching that it holds.
        Monitoring = "monitoring",
        /// Over.
        Resolved = "resolved",
        /// Over, and the review is published.
        Postmortem = "postmortem",
    }
}

impl IncidentStatus {
    /// Whether the incident is over.
    #[must_use]
    pub fn is_closed(self) -> bool {
        matches!(self, Self::Resolved | Self::Postmortem)
    }

    /// How users read it.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Investigating => "Investigating",
            Self::Identified => "Identified",
            Self::Monitoring => "Monitoring",
            Self::Resolved => "Resolved",
            Self::Postmortem => "Postmortem",
        }
    }
}

wire_enum! {
    /// Where a scheduled maintenance stands.
    MaintenanceStatus, "maintenance status" {
        /// Announced, not started.
        Scheduled = "scheduled",
        /// The window is open; its components are under maintenance.
        InProgress = "in_progress",
        /// The work is done and being checked.
        Verifying = "verifying",
        /// Over.
        Completed = "completed",
    }
}

impl MaintenanceStatus {
    /// Whether the maintenance is over.
    #[must_use]
    pub fn is_closed(self) -> bool {
        self == Self::Completed
    }

    /// Whether its window is open.
    #[must_use]
    pub fn is_active(self) -> bool {
        matches!(self, Self::InProgress | Self::Verifying)
    }

    /// How users read it.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Scheduled => "Scheduled",
            Self::InProgress => "In progress",
            Self::Verifying => "Verifying",
            Self::Completed => "Completed",
        }
    }
}

wire_enum! {
    /// How bad an incident is for users.
    Impact, "impact" {
        /// No user-visible effect.
        None = "none",
        /// Some users see errors or slowness.
        Minor = "minor",
        /// Many users cannot use part of the service.
        Major = "major",
        /// The service is down for most users.
        Critical = "critical",
    }
}

impl Impact {
    /// The indicator this impact raises the page to while the incident is open.
    #[must_use]
    pub fn indicator(self) -> Indicator {
        match self {
            Self::None => Indicator::None,
            Self::Minor => Indicator::Minor,
            Self::Major => Indicator::Major,
            Self::Critical => Indicator::Critical,
        }
    }

    /// The impact a set of component states implies: a major outage is critical, a
    /// partial outage major, degraded performance minor.
    #[must_use]
    pub fn implied_by(statuses: impl IntoIterator<Item = ComponentStatus>) -> Option<Self> {
        statuses
            .into_iter()
            .filter_map(|s| match s {
                ComponentStatus::MajorOutage => Some(Self::Critical),
                ComponentStatus::PartialOutage => Some(Self::Major),
                ComponentStatus::DegradedPerformance => Some(Self::Minor),
                ComponentStatus::Operational | ComponentStatus::UnderMaintenance => None,
            })
            .max()
    }
}

/// The impact a scheduled maintenance carries in the JSON (`impact` field), as
/// Statuspage reports its maintenances.
pub const MAINTENANCE_IMPACT: &str = "maintenance";

wire_enum! {
    /// The page's overall state: Statuspage's `status.indicator`.
    Indicator, "indicator" {
        /// All systems operational.
        None = "none",
        /// A maintenance is in progress and nothing is worse.
        Maintenance = "maintenance",
        /// Something is degraded, or a minor incident is open.
        Minor = "minor",
        /// A partial outage, or a major incident is open.
        Major = "major",
        /// A major outage, or a critical incident is open.
        Critical = "critical",
    }
}

impl Indicator {
    /// Statuspage's `status.description` for it.
    #[must_use]
    pub fn description(self) -> &'static str {
        match self {
            Self::None => "All Systems Operational",
            Self::Maintenance => "Service Under Maintenance",
            Self::Minor => "Minor Service Outage",
            Self::Major => "Partial System Outage",
            Self::Critical => "Major System Outage",
        }
    }
}

/// A component id: lowercase letters, digits and `-`, 1 to 64 long, e.g.
/// `data-retrieval`.
///
/// # Errors
/// Says what is wrong with `text`.
pub fn check_id(text: &str) -> Result<(), String> {
    let valid = !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{text:?} is not a valid id: use 1 to 64 lowercase letters, digits and -"
        ))
    }
}

/// The id a name gets when none is given: `Data retrieval` → `data-retrieval`.
#[must_use]
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    out.truncate(64);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn statuses_parse_case_insensitively_and_errors_list_the_choices() {
        assert_eq!(
            "Major_Outage".parse::<ComponentStatus>(),
            Ok(ComponentStatus::MajorOutage)
        );
        let error = "down".parse::<ComponentStatus>().unwrap_err();
        assert!(
            error.contains(
                "operational, degraded_performance, partial_outage, major_outage, under_maintenance"
            ),
            "{error}"
        );
        assert_eq!(
            serde_json::to_string(&IncidentStatus::Postmortem).unwrap(),
            "\"postmortem\""
        );
        assert_eq!(
            serde_json::from_str::<MaintenanceStatus>("\"in_progress\"").unwrap(),
            MaintenanceStatus::InProgress
        );
    }

    #[test]
    fn downtime_follows_statuspage_weights() {
        assert!((ComponentStatus::MajorOutage.downtime_weight() - 1.0).abs() < f64::EPSILON);
        assert!((ComponentStatus::PartialOutage.downtime_weight() - 0.3).abs() < f64::EPSILON);
        assert!(ComponentStatus::DegradedPerformance.downtime_weight().abs() < f64::EPSILON);
        assert!(ComponentStatus::UnderMaintenance.downtime_weight().abs() < f64::EPSILON);
    }

    #[test]
    fn impact_is_implied_by_the_worst_component() {
        assert_eq!(
            Impact::implied_by([
                ComponentStatus::DegradedPerformance,
                ComponentStatus::MajorOutage
            ]),
            Some(Impact::Critical)
        );
        assert_eq!(Impact::implied_by([ComponentStatus::Operational]), None);
        assert!(Indicator::Critical > Indicator::Major && Indicator::Maintenance > Indicator::None);
    }

    #[test]
    fn ids_are_slugs() {
        assert_eq!(slug("Data retrieval"), "data-retrieval");
        assert_eq!(slug("  API (v1) "), "api-v1");
        assert!(check_id("data-retrieval").is_ok());
        assert!(check_id("Data").is_err());
        assert!(check_id("").is_err());
        assert!(check_id("<script>").is_err());
    }
}
