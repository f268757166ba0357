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

/// `warden up` started (`pid` in the payload).
pub const CONTROL_STARTED: &str = "control.started";
/// `warden up` stopped cleanly, after its instances.
pub const CONTROL_STOPPED: &str = "control.stopped";
/// `warden up` started after a run that did not stop cleanly (a crash); the payload
/// names the instances that run left.
pub const CONTROL_RESTARTED: &str = "control.restarted";
/// An API instance was started (`pid`, `instance`, `command`).
pub const INSTANCE_STARTED: &str = "instance.started";
/// An API instance exited by itself (and is restarted).
pub const INSTANCE_EXITED: &str = "instance.exited";
/// An API instance was stopped: drained, `warden up` stopping, or an orphan of a
/// crashed control plane stopped (`orphan` in the payload).
pub const INSTANCE_STOPPED: &str = "instance.stopped";
/// An API instance of a crashed control plane was found dead on its restart.
pub const INSTANCE_LOST: &str = "instance.lost";
