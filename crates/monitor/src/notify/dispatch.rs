//! The dispatcher: one ordered lane per (notifier, alert), de-duplication and retries.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::fmt;
use std::hash::{BuildHasher as _, RandomState};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::runtime::Handle;
use tokio::sync::Notify;

use super::channel::{Channel, build_channels};
use super::{
    AlertStatus, ChannelConfig, Delivery, DeliveryOutcome, NETWORK_TIMEOUT, Notification,
    RetryPolicy, now_ms,
};

/// Where every [`Delivery`] record goes. Called on a runtime worker thread: keep it
/// quick (append to the store, send on a channel).
type Sink = Arc<dyn Fn(Delivery) + Send + Sync>;

/// Sends notifications to every configured notifier, in the background.
///
/// Cheap to clone; clones share the queues and the memory of what was sent.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    channels: Vec<Channel>,
    retry: RetryPolicy,
    repeat_interval: Duration,
    sink: Sink,
    http: reqwest::Client,
    /// The runtime `new` was called on, if any, for callers outside a runtime.
    runtime: Option<Handle>,
    lanes: Mutex<Lanes>,
    /// Woken when the last busy lane goes idle.
    idle: Notify,
}

/// Every lane, keyed by (channel index, fingerprint).
struct Lanes {
    by_key: HashMap<(usize, String), Lane>,
    busy: usize,
    last_prune: Instant,
}

/// The notifications for one alert on one notifier, delivered one at a time, in
/// order, by one task while the queue is not empty.
#[derive(Default)]
struct Lane {
    /// Waiting; the one being delivered has been taken off.
    queue: VecDeque<Notification>,
    /// A task is delivering this lane's queue.
    busy: bool,
    /// The status last delivered and when.
    last_sent: Option<(AlertStatus, Instant)>,
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field("channels", &self.inner.channels)
            .field("retry", &self.inner.retry)
            .field("repeat_interval", &self.inner.repeat_interval)
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// Checks the notifiers and the policy; an error names the notifier and the field.
    ///
    /// # Errors
    ///
    /// A notifier with an empty or duplicate name, a URL that is not http(s), an
    /// empty secret, an address that is not an email address, a password without
    /// TLS to a remote server; a retry policy with no attempts or backoffs upside down.
    pub fn new(
        channels: Vec<ChannelConfig>,
        retry: RetryPolicy,
        repeat_interval: Duration,
        sink: Sink,
    ) -> anyhow::Result<Self> {
        if retry.attempts == 0 {
            bail!("notify retry policy: `attempts` is 0; it counts the first attempt too");
        }
        if retry.initial_backoff > retry.max_backoff {
            bail!(
                "notify retry policy: `initial_backoff` ({}) is longer than `max_backoff` ({})",
                humantime::format_duration(retry.initial_backoff),
                humantime::format_duration(retry.max_backoff)
            );
        }
        let channels = build_channels(channels)?;
        let http = reqwest::Client::builder()
            .timeout(NETWORK_TIMEOUT)
            .connect_timeout(NETWORK_TIMEOUT)
            // A redirected webhook is a misconfiguration to fix, not to follow.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("warden/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the HTTP client for notifiers")?;
        Ok(Self {
            inner: Arc::new(Inner {
                channels,
                retry,
                repeat_interval,
                sink,
                http,
                runtime: Handle::try_current().ok(),
                lanes: Mutex::new(Lanes {
                    by_key: HashMap::new(),
                    busy: 0,
                    last_prune: Instant::now(),
                }),
                idle: Notify::new(),
            }),
        })
    }

    /// Queues `notification` for every notifier and returns at once; delivery happens
    /// on tasks of the caller's tokio runtime, or else of the one `new` was called on.
    /// With neither, nothing can be sent: each notifier gets a failed [`Delivery`].
    pub fn dispatch(&self, notification: Notification) {
        let inner = &self.inner;
        let Some(runtime) = Handle::try_current().ok().or_else(|| inner.runtime.clone()) else {
            tracing::error!(fingerprint = %notification.fingerprint, "no tokio runtime: notification not sent");
            for channel in &inner.channels {
                inner.record(
                    channel,
                    &notification,
                    0,
                    DeliveryOutcome::Failed {
                        error: "no tokio runtime to send on".to_owned(),
                    },
                    None,
                );
            }
            return;
        };
        let mut superseded = Vec::new();
        let mut start = Vec::new();
        {
            let mut lanes = inner.lock_lanes();
            inner.prune(&mut lanes);
            let lanes = &mut *lanes;
            for index in 0..inner.channels.len() {
                let lane = lanes
                    .by_key
                    .entry((index, notification.fingerprint.clone()))
                    .or_default();
                // While a delivery is in progress (a receiver down, retries backing off)
                // an alert that keeps firing keeps being dispatched: keep only the newest
                // of a run of equal statuses, so the queue holds at most one per change.
                match lane.queue.back_mut() {
                    Some(last) if last.status == notification.status => {
                        let old = std::mem::replace(last, notification.clone());
                        superseded.push((index, old));
                    }
                    _ => lane.queue.push_back(notification.clone()),
                }
                if !lane.busy {
                    lane.busy = true;
                    lanes.busy += 1;
                    start.push(index);
                }
            }
        }
        for (index, old) in superseded {
            inner.record(
                &inner.channels[index],
                &old,
                0,
                DeliveryOutcome::Suppressed {
                    reason: "replaced by a newer notification with the same status".to_owned(),
                },
                None,
            );
        }
        for index in start {
            // The guard is made here, not in the task, so that a task the runtime
            // drops unstarted (it is shutting down) still marks its lane idle.
            let lane = LaneGuard {
                inner: Arc::clone(inner),
                key: (index, notification.fingerprint.clone()),
                armed: true,
            };
            runtime.spawn(lane.run());
        }
    }

    /// Waits until no notification is queued or being delivered (retries included).
    /// For a clean shutdown, and for tests.
    pub async fn idle(&self) {
        loop {
            let notified = self.inner.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.inner.lock_lanes().busy == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Inner {
    fn lock_lanes(&self) -> MutexGuard<'_, Lanes> {
        // Nothing is left half-updated under this lock, so a poisoned one is usable.
        self.lanes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets idle lanes whose last delivery is older than the repeat interval: they
    /// no longer suppress anything. Runs at most once a minute.
    fn prune(&self, lanes: &mut Lanes) {
        if lanes.last_prune.elapsed() < Duration::from_secs(60) {
            return;
        }
        lanes.last_prune = Instant::now();
        let repeat = self.repeat_interval;
        lanes.by_key.retain(|_, lane| {
            lane.busy
                || !lane.queue.is_empty()
                || lane.last_sent.is_some_and(|(_, at)| at.elapsed() < repeat)
        });
    }

    fn lane_done(&self, lanes: &mut Lanes) {
        lanes.busy -= 1;
        if lanes.busy == 0 {
            self.idle.notify_waiters();
        }
    }

    /// Tries `n` on `channel` until it is delivered, fails for good, or the attempts
    /// run out; records each attempt. True when delivered.
    async fn deliver(&self, channel: &Channel, n: &Notification) -> bool {
        for attempt in 1..=self.retry.attempts {
            match channel.attempt(&self.http, n).await {
                Ok(http_status) => {
                    tracing::info!(notifier = %channel.name, fingerprint = %n.fingerprint, status = %n.status, attempt, "notification delivered");
                    self.record(channel, n, attempt, DeliveryOutcome::Delivered, http_status);
                    return true;
                }
                Err(e) => {
                    let last = attempt == self.retry.attempts || e.retry.is_none();
                    tracing::warn!(
                        notifier = %channel.name, fingerprint = %n.fingerprint, status = %n.status,
                        attempt, error = %e.message, final = last, "notification attempt failed"
                    );
                    self.record(
                        channel,
                        n,
                        attempt,
                        DeliveryOutcome::Failed { error: e.message },
                        e.http_status,
                    );
                    if last {
                        return false;
                    }
                    let wait = match e.retry.flatten() {
                        Some(asked) => asked.min(self.retry.max_backoff),
                        None => backoff(&self.retry, attempt),
                    };
                    tokio::time::sleep(wait).await;
                }
            }
        }
        false
    }

    fn record(
        &self,
        channel: &Channel,
        n: &Notification,
        attempt: u32,
        outcome: DeliveryOutcome,
        http_status: Option<u16>,
    ) {
        (self.sink)(Delivery {
            notifier: channel.name.clone(),
            fingerprint: n.fingerprint.clone(),
            status: n.status,
            attempt,
            outcome,
            at_ms: now_ms(),
            http_status,
        });
    }
}

/// The right to deliver one lane's queue, held by exactly one task while the lane is
/// busy. However the task ends (queue empty, a panicking sink, the runtime dropping
/// it), the lane is marked idle again, so the next dispatch starts a new task.
struct LaneGuard {
    inner: Arc<Inner>,
    key: (usize, String),
    /// Still to mark the lane idle on drop.
    armed: bool,
}

impl LaneGuard {
    /// Delivers the lane's queue, in order, until it is empty.
    async fn run(mut self) {
        let inner = Arc::clone(&self.inner);
        let channel = &inner.channels[self.key.0];
        loop {
            let (notification, last_sent) = {
                let mut lanes = inner.lock_lanes();
                let Some(lane) = lanes.by_key.get_mut(&self.key) else {
                    return;
                };
                match lane.queue.pop_front() {
                    Some(n) => (n, lane.last_sent),
                    None => {
                        // Under the same lock `dispatch` queues under: nothing can
                        // slip in between seeing the queue empty and leaving.
                        lane.busy = false;
                        inner.lane_done(&mut lanes);
                        self.armed = false;
                        return;
                    }
                }
            };
            let repeat = last_sent.filter(|&(status, at)| {
                status == notification.status && at.elapsed() < inner.repeat_interval
            });
            if let Some((status, at)) = repeat {
                let reason = format!(
                    "{status} already sent {} ago; the repeat interval is {}",
                    humantime::format_duration(round_to_ms(at.elapsed())),
                    humantime::format_duration(inner.repeat_interval)
                );
                tracing::debug!(notifier = %channel.name, fingerprint = %notification.fingerprint, %reason, "notification suppressed");
                inner.record(
                    channel,
                    &notification,
                    0,
                    DeliveryOutcome::Suppressed { reason },
                    None,
                );
                continue;
            }
            if inner.deliver(channel, &notification).await
                && let Some(lane) = inner.lock_lanes().by_key.get_mut(&self.key)
            {
                lane.last_sent = Some((notification.status, Instant::now()));
            }
        }
    }
}

impl Drop for LaneGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut lanes = self.inner.lock_lanes();
        if let Some(lane) = lanes.by_key.get_mut(&self.key) {
            lane.busy = false;
        }
        self.inner.lane_done(&mut lanes);
    }
}

/// The wait after failed attempt number `attempt` (1-based): `initial_backoff` doubled
/// each time, capped at `max_backoff`, then "equal jitter" — a random point in its
/// upper half — so notifiers that failed together do not retry together.
fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let doubling = 2u32.saturating_pow(attempt.saturating_sub(1));
    let base = policy
        .initial_backoff
        .saturating_mul(doubling)
        .min(policy.max_backoff);
    let half = base / 2;
    let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    let jitter = if nanos == 0 {
        0
    } else {
        RandomState::new().hash_one(attempt) % nanos
    };
    half + Duration::from_nanos(jitter)
}

fn round_to_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_stops_at_the_cap() {
        let policy = RetryPolicy {
            attempts: 10,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        };
        for (attempt, base) in [(1, 1), (2, 2), (3, 4), (4, 8), (7, 60), (9, 60)] {
            let base = Duration::from_secs(base);
            for _ in 0..20 {
                let wait = backoff(&policy, attempt);
                assert!(
                    wait >= base / 2 && wait <= base,
                    "attempt {attempt}: {wait:?}"
                );
            }
        }
        assert!(backoff(&policy, u32::MAX) <= policy.max_backoff);
    }

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        use super::super::channel::parse_retry_after;
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        let later = time::OffsetDateTime::now_utc() + time::Duration::seconds(30);
        let header = later
            .format(&time::format_description::well_known::Rfc2822)
            .expect("format");
        let wait = parse_retry_after(&header).expect("parse");
        assert!(wait > Duration::from_secs(25) && wait <= Duration::from_secs(30));
        assert_eq!(parse_retry_after("soon"), None);
    }
}
