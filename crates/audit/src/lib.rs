//! Third-party libraries: what a Cargo.lock contains and how two of them differ.
//!
//! - [`lockdiff`] compares two lockfiles: packages added, removed, upgraded and
//!   downgraded, with the kind of change (major, minor, patch).

pub mod lockdiff;
