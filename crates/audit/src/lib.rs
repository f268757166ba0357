//! Third-party libraries: what a Cargo.lock contains, whether it is safe and allowed
//! to ship, how two of them differ, and the ledger of every update and its impact.
//!
//! - [`lockdiff`] compares two lockfiles (or two release dependency sets): packages
//!   added, removed, upgraded and downgraded, with the kind of change (major, minor,
//!   patch). `warden gate`, the release registry and the postmortem use it.
//! - [`inventory`] lists every package of a lockfile: version, source, checksum,
//!   license, and which workspace members pull it in (`warden deps inventory`).
//! - [`advisories`] finds and dates the RustSec advisory database and matches its
//!   advisories against a lockfile with rustsec's own rules, as `cargo audit` does.
//! - [`policy`] is `ops/deps-policy.toml`: allowed licenses, ignored advisories with
//!   reasons and expiry dates, duplicates and sources.
//! - [`check`] runs the audit (`warden deps audit`): advisories, licenses, duplicate
//!   versions and sources against the policy.
//! - [`ledger`] is `ops/dependency-ledger.toml`: one entry per change of Cargo.lock
//!   with the packages changed, why, and the measured impact from a gate report
//!   (`warden deps ledger record|check|show`).

pub mod advisories;
pub mod check;
pub mod inventory;
pub mod ledger;
pub mod lockdiff;
pub mod lockfile;
pub mod osv;
pub mod policy;

/// Today's date (UTC), for expiry dates and ledger entries.
pub fn today() -> time::Date {
    time::OffsetDateTime::now_utc().date()
}
