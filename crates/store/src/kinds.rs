//! Event kinds that more than one crate writes or reads: the deploy controller
//! writes them, the leak comparison, the status page's automation and the
//! postmortem read them. One spelling, here beside the log they are kept in.

/// A deploy began: the new release's instances are starting.
pub const DEPLOY_STARTED: &str = "deploy.started";
/// A canary began: a share of the traffic moved to the new release.
pub const CANARY: &str = "deploy.canary";
/// A release was activated: traffic moved to it (`from` in the payload names the
/// release it replaced).
pub const DEPLOYED: &str = "deploy.completed";
/// Traffic moved back to an earlier release.
pub const ROLLED_BACK: &str = "rollback.completed";
/// A release was marked bad.
pub const MARKED_BAD: &str = "release.marked_bad";
