//! Deploys and rollbacks: which release's instances run, and which get traffic.
//!
//! - A **deploy** starts the new release's instances beside the active ones, waits
//!   until every one answers `/readyz`, switches the proxy in one atomic store and
//!   keeps the previous release **warm** (running, no traffic) through the bake
//!   window. A release that does not get ready is never switched to: its instances
//!   are stopped and the error says why (its exit code and last stderr line).
//! - With a **canary**, a share of requests goes to the new release for a while
//!   before the full switch.
//! - A **rollback** switches the proxy back to the warm release, which takes effect
//!   for the next request; only when no warm release matches is one started first.
//!   It touches nothing but memory on its way: events are written afterwards, and a
//!   store that fails to write is logged, not fatal.
//! - **Automatic rollback**: an alert in the policy firing on the new release during
//!   its bake window (or its canary) rolls back without a human and marks the release
//!   bad.
//! - When the bake window ends, the previous release's instances are drained and
//!   stopped, and the new release has proved itself.
//!
//! Old instances are **drained**: taken out of the proxy, given until the drain
//! deadline to finish their in-flight requests, then stopped with SIGTERM.
//!
//! The controller also **stores the proxy's client windows** (distinct users and
//! those affected, per minute): [`Controller::record_client_windows`] takes the
//! ended ones from the proxy and writes them to the store, keeping them in memory
//! while the store fails, and [`Controller::shutdown`] writes the current, partial
//! one last.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use warden_monitor::rules::{Phase, Transition};
use warden_store::{ClientWindow, NewEvent, Release, Store};

use crate::history::{DEPLOYED, History, MARKED_BAD, ROLLED_BACK};
use crate::proxy::{Backend, Routes, Upstream};
use crate::supervisor::{Context, Health, InstanceSpec, supervise};

/// How deploys and rollbacks behave.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Instances per release.
    pub replicas: usize,
    /// The API's data directory, shared by every instance of every release.
    pub api_data_dir: std::path::PathBuf,
    /// How long the previous release stays warm after a deploy.
    pub bake: Duration,
    /// How long old instances get to finish their requests.
    pub drain_timeout: Duration,
    /// How long a new release gets to answer `/readyz`.
    pub ready_timeout: Duration,
    /// Alerts that roll back a release in its bake window; empty: never automatic.
    pub rollback_on: BTreeSet<String>,
    /// The instances' deadlines for slow and idle connections.
    pub connection_timeouts: warden_telemetry::serve::Timeouts,
}

impl Settings {
    /// The alerts automatic rollback reacts to by default.
    pub const DEFAULT_ROLLBACK_ON: [&str; 3] = ["MemoryLeak", "ErrorRatioHigh", "LatencyHigh"];
}

/// A deploy request (`warden deploy`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    pub release: String,
    /// Share of requests for the new release during the canary, in percent.
    #[serde(default)]
    pub canary_percent: Option<f64>,
    /// How long the canary runs before the full switch (seconds).
    #[serde(default)]
    pub canary_seconds: Option<u64>,
    /// Deploy without a passing gate report for a dependency change, or a release
    /// marked bad. Recorded in the event log.
    #[serde(default)]
    pub force: bool,
    /// A `warden gate --report` JSON document for the active → new pair.
    #[serde(default)]
    pub gate_report: Option<serde_json::Value>,
}

/// A rollback request (`warden rollback`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The release to go back to [default: the warm or last known good one].
    #[serde(default)]
    pub to: Option<String>,
    /// Why, for the event log and the bad mark.
    #[serde(default)]
    pub reason: Option<String>,
}

/// What a deploy or rollback did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    /// `deployed`, `canary` or `rolled back`.
    pub action: String,
    pub from: String,
    pub to: String,
    /// Time from the request to the proxy's switch, in milliseconds.
    pub switch_ms: f64,
    /// Whether the target was already running (a rollback to a warm release).
    pub warm: bool,
    pub summary: String,
}

/// Why a deploy or rollback did not happen.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Rejected(String),
    #[error("{0}")]
    Failed(String),
}

/// The live view of deploys, for `/api/deploy` and `warden status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    pub active: String,
    pub warm: Option<String>,
    /// Unix ms when the warm release is stopped and the active one has baked.
    pub bake_ends_ms: Option<i64>,
    pub canary: Option<String>,
    pub canary_percent: Option<f64>,
    pub deploying: Option<String>,
    pub last_known_good: Option<String>,
    pub bad: BTreeMap<String, String>,
    /// Instances of the active release that take requests / all of them.
    pub ready_instances: usize,
    pub instances: usize,
}

/// The running instances of one release.
pub struct Pool {
    pub release: Release,
    pub upstream: Arc<Upstream>,
    health: Vec<Arc<Health>>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Pool {
    /// Starts `replicas` instances of `release` on free loopback ports.
    fn start(
        release: &Release,
        settings: &Settings,
        context: &Context,
    ) -> anyhow::Result<Arc<Self>> {
        let (stop, stop_rx) = watch::channel(false);
        let mut backends = Vec::new();
        let mut health = Vec::new();
        let mut tasks = Vec::new();
        for _ in 0..settings.replicas.max(1) {
            let listen = free_port()?;
            let backend = Backend::new(&release.name, listen);
            let h = Arc::new(Health::default());
            let spec = InstanceSpec {
                bin: release.binary_path.clone().into(),
                release: release.name.clone(),
                listen,
                data_dir: settings.api_data_dir.clone(),
                args: release.args.clone(),
                connection_timeouts: settings.connection_timeouts,
            };
            tasks.push(tokio::spawn(supervise(
                spec,
                Arc::clone(&backend),
                Arc::clone(&h),
                context.clone(),
                stop_rx.clone(),
            )));
            backends.push(backend);
            health.push(h);
        }
        Ok(Arc::new(Self {
            release: release.clone(),
            upstream: Upstream::new(&release.name, backends),
            health,
            stop,
            tasks: Mutex::new(tasks),
        }))
    }

    /// Waits until every instance is ready; the error says why one is not.
    async fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.upstream.backends.iter().all(|b| b.is_ready()) {
                return Ok(());
            }
            if let Some(story) = self
                .health
                .iter()
                .find_map(|h| (h.exits() > 0).then(|| h.last_exit()))
            {
                return Err(story.unwrap_or_else(|| "an instance exited while starting".to_owned()));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "not ready after {}: /readyz never answered 200",
                    humantime::format_duration(timeout)
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Takes the instances out of the proxy, waits (up to `deadline`) for their
    /// in-flight requests, then stops them.
    async fn drain(&self, deadline: Duration) {
        for backend in &self.upstream.backends {
            backend.start_draining();
        }
        let until = Instant::now() + deadline;
        while self.upstream.backends.iter().any(|b| b.inflight() > 0) && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = self.stop.send(true);
        let tasks = std::mem::take(
            &mut *self
                .tasks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for task in tasks {
            let _ = task.await;
        }
    }

    fn ready_count(&self) -> usize {
        self.upstream
            .backends
            .iter()
            .filter(|b| b.is_ready())
            .count()
    }
}

/// Picks a free loopback port for an instance.
fn free_port() -> anyhow::Result<std::net::SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| anyhow::anyhow!("cannot find a free loopback port for an instance: {e}"))?;
    Ok(listener.local_addr()?)
}

struct Canary {
    pool: Arc<Pool>,
    share: f64,
}

struct State {
    active: Arc<Pool>,
    warm: Option<(Arc<Pool>, i64)>,
    canary: Option<Canary>,
    deploying: Option<String>,
    /// Bumped by every switch, so a deploy that waited can tell it was overtaken.
    generation: u64,
    history: History,
}

/// Owns the pools and the proxy's routes.
pub struct Controller {
    context: Context,
    recorder: Recorder,
    settings: Settings,
    state: tokio::sync::Mutex<State>,
    /// The registry as last read, for when the store cannot be read.
    releases: Mutex<BTreeMap<String, Release>>,
    /// Client windows taken from the proxy and not yet stored.
    client_windows: Mutex<Vec<ClientWindow>>,
}

/// Client windows kept while the store fails: a day of minutes. Older ones go.
const MAX_UNSTORED_WINDOWS: usize = 24 * 60;

impl Controller {
    /// Starts `initial`'s instances and routes the proxy to them. The proxy waits
    /// for them to become ready; nothing waits here.
    pub fn start(
        context: Context,
        settings: Settings,
        initial: &Release,
    ) -> anyhow::Result<Arc<Self>> {
        let mut history = History::load(&context.store).unwrap_or_else(|error| {
            tracing::warn!(%error, "cannot read the deploy history; starting without it");
            History::default()
        });
        let pool = Pool::start(initial, &settings, &context)?;
        context.proxy.switch(Routes::to(Arc::clone(&pool.upstream)));
        let recorder = Recorder::start(context.store.clone());
        if history.active() != Some(initial.name.as_str()) {
            let from = history.active().map(str::to_owned);
            history.activated(&initial.name, warden_store::now_ms());
            recorder.record(
                DEPLOYED,
                &initial.name,
                serde_json::json!({
                    "summary": format!("{} started by warden up", initial.name),
                    "from": from,
                }),
            );
        }
        let releases = context
            .store
            .releases()
            .unwrap_or_else(|_| vec![initial.clone()])
            .into_iter()
            .map(|r| (r.name.clone(), r))
            .collect();
        Ok(Arc::new(Self {
            context,
            recorder,
            settings,
            state: tokio::sync::Mutex::new(State {
                active: pool,
                warm: None,
                canary: None,
                deploying: None,
                generation: 0,
                history,
            }),
            releases: Mutex::new(releases),
            client_windows: Mutex::new(Vec::new()),
        }))
    }

    /// Every `every`, takes the client windows that ended from the proxy and
    /// writes them to the store. Runs until the task is dropped.
    pub async fn record_client_windows(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let windows = self.context.proxy.take_closed_windows();
            self.store_client_windows(windows).await;
        }
    }

    /// Writes `windows` and any left from before; what fails to write is kept for
    /// the next time (up to [`MAX_UNSTORED_WINDOWS`]).
    async fn store_client_windows(&self, windows: Vec<ClientWindow>) {
        let mut all = std::mem::take(
            &mut *self
                .client_windows
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        all.extend(windows);
        if all.is_empty() {
            return;
        }
        let store = self.context.store.clone();
        let written = tokio::task::spawn_blocking(move || {
            let mut failed = Vec::new();
            let mut last_error = None;
            for window in all {
                if let Err(error) = store.record_client_window(&window) {
                    last_error = Some(error);
                    failed.push(window);
                }
            }
            (failed, last_error)
        })
        .await;
        let Ok((mut failed, last_error)) = written else {
            tracing::error!("storing client windows failed; they are lost");
            return;
        };
        if let Some(error) = last_error {
            tracing::warn!(%error, windows = failed.len(), "could not store client windows; keeping them for the next try");
        }
        let mut kept = self
            .client_windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        failed.append(&mut kept);
        if failed.len() > MAX_UNSTORED_WINDOWS {
            let dropped = failed.len() - MAX_UNSTORED_WINDOWS;
            failed.sort_by_key(|w| w.start_ms);
            failed.drain(..dropped);
            tracing::error!(
                dropped,
                "client windows dropped: the store has been failing too long"
            );
        }
        *kept = failed;
    }

    /// The registry's entry for `name`, from the store or, failing that, the cache.
    fn release(&self, name: &str) -> Result<Release, Refusal> {
        let mut cache = self
            .releases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match self.context.store.releases() {
            Ok(list) => {
                *cache = list.into_iter().map(|r| (r.name.clone(), r)).collect();
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read the release registry; using the copy in memory")
            }
        }
        cache.get(name).cloned().ok_or_else(|| {
            Refusal::NotFound(format!(
                "no release named {name:?}: `warden release list` shows the recorded ones, \
                 `warden release add` records one"
            ))
        })
    }

    /// The current state.
    pub async fn snapshot(&self) -> Snapshot {
        let state = self.state.lock().await;
        Snapshot {
            active: state.active.release.name.clone(),
            warm: state.warm.as_ref().map(|(p, _)| p.release.name.clone()),
            bake_ends_ms: state.warm.as_ref().map(|(_, until)| *until),
            canary: state.canary.as_ref().map(|c| c.pool.release.name.clone()),
            canary_percent: state.canary.as_ref().map(|c| c.share * 100.0),
            deploying: state.deploying.clone(),
            last_known_good: state.history.last_known_good().map(str::to_owned),
            bad: state.history.bad.clone(),
            ready_instances: state.active.ready_count(),
            instances: state.active.upstream.backends.len(),
        }
    }

    /// `warden deploy`.
    pub async fn deploy(self: &Arc<Self>, request: DeployRequest) -> Result<Outcome, Refusal> {
        let started = Instant::now();
        let release = self.release(&request.release)?;
        let share = match request.canary_percent {
            None => None,
            Some(p) if p > 0.0 && p < 100.0 => Some(p / 100.0),
            Some(p) => {
                return Err(Refusal::Rejected(format!(
                    "--canary {p}%: give a share between 0% and 100%, e.g. --canary 10%"
                )));
            }
        };
        let (generation, from) = {
            let mut state = self.state.lock().await;
            if let Some(other) = &state.deploying {
                return Err(Refusal::Conflict(format!(
                    "a deploy of {other} is in progress; wait for it to finish"
                )));
            }
            if let Some(canary) = &state.canary {
                return Err(Refusal::Conflict(format!(
                    "the canary of {} is running; wait for its switch or roll it back",
                    canary.pool.release.name
                )));
            }
            let active = state.active.release.clone();
            if active.name == release.name {
                return Err(Refusal::Conflict(format!(
                    "{} is already active",
                    release.name
                )));
            }
            let mut refusals = Vec::new();
            if let Some(reason) = state.history.bad.get(&release.name) {
                refusals.push(format!("{} is marked bad ({reason})", release.name));
            }
            if active.lockfile_sha256 != release.lockfile_sha256
                && let Err(why) = check_gate(request.gate_report.as_ref(), &active, &release)
            {
                refusals.push(why);
            }
            if !refusals.is_empty() && !request.force {
                return Err(Refusal::Rejected(format!(
                    "{}; pass --force to deploy anyway (it is recorded)",
                    refusals.join("; ")
                )));
            }
            state.deploying = Some(release.name.clone());
            self.recorder.record(
                warden_store::kinds::DEPLOY_STARTED,
                &release.name,
                serde_json::json!({
                    "summary": format!("deploy of {} started (from {})", release.name, active.name),
                    "from": active.name,
                    "forced": request.force,
                    "overridden": if request.force { refusals.clone() } else { Vec::new() },
                    "canary_percent": request.canary_percent,
                }),
            );
            if request.force && !refusals.is_empty() {
                tracing::warn!(release = %release.name, "deploy forced past: {}", refusals.join("; "));
            }
            (state.generation, active.name.clone())
        };

        let pool = match Pool::start(&release, &self.settings, &self.context) {
            Ok(pool) => pool,
            Err(error) => {
                self.state.lock().await.deploying = None;
                return Err(Refusal::Failed(format!("{error:#}")));
            }
        };
        if let Err(why) = pool.wait_ready(self.settings.ready_timeout).await {
            tokio::spawn({
                let pool = Arc::clone(&pool);
                async move { pool.drain(Duration::ZERO).await }
            });
            self.state.lock().await.deploying = None;
            let message = format!(
                "{} did not get ready, so traffic stays on {from}: {why}",
                release.name
            );
            self.recorder.record(
                "deploy.failed",
                &release.name,
                serde_json::json!({ "summary": message, "from": from, "reason": why }),
            );
            return Err(Refusal::Failed(message));
        }

        let mut state = self.state.lock().await;
        state.deploying = None;
        if state.generation != generation {
            tokio::spawn(async move { pool.drain(Duration::ZERO).await });
            return Err(Refusal::Conflict(format!(
                "a rollback happened while {} was starting; the deploy was abandoned",
                release.name
            )));
        }
        if let Some(share) = share {
            let seconds = request.canary_seconds.unwrap_or(300);
            self.context.proxy.switch(Routes {
                primary: Arc::clone(&state.active.upstream),
                canary: Some((Arc::clone(&pool.upstream), share)),
            });
            state.generation += 1;
            state.canary = Some(Canary {
                pool: Arc::clone(&pool),
                share,
            });
            let summary = format!(
                "canary: {}% of requests to {} for {}, then the full switch",
                share * 100.0,
                release.name,
                humantime::format_duration(Duration::from_secs(seconds))
            );
            self.recorder.record(
                warden_store::kinds::CANARY,
                &release.name,
                serde_json::json!({ "summary": summary, "from": from, "share": share }),
            );
            let controller = Arc::clone(self);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(seconds)).await;
                controller.promote(&pool).await;
            });
            return Ok(Outcome {
                action: "canary".to_owned(),
                from,
                to: release.name,
                switch_ms: millis(started.elapsed()),
                warm: false,
                summary,
            });
        }
        let outcome = self.switch_to(&mut state, pool, started, false);
        Ok(outcome)
    }

    /// Ends a canary that is still running with the full switch.
    async fn promote(self: &Arc<Self>, pool: &Arc<Pool>) {
        let mut state = self.state.lock().await;
        let current = state
            .canary
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(&c.pool, pool));
        if current {
            state.canary = None;
            self.switch_to(&mut state, Arc::clone(pool), Instant::now(), true);
        }
    }

    /// The full switch to a new release: the old one stays warm through the bake.
    fn switch_to(
        self: &Arc<Self>,
        state: &mut State,
        pool: Arc<Pool>,
        started: Instant,
        from_canary: bool,
    ) -> Outcome {
        self.context
            .proxy
            .switch(Routes::to(Arc::clone(&pool.upstream)));
        let switch_ms = millis(started.elapsed());
        state.generation += 1;
        let name = pool.release.name.clone();
        let previous = std::mem::replace(&mut state.active, pool);
        let from_name = previous.release.name.clone();
        let bake_ends = warden_store::now_ms()
            + i64::try_from(self.settings.bake.as_millis()).unwrap_or(i64::MAX);
        if let Some((older, _)) = state.warm.replace((Arc::clone(&previous), bake_ends)) {
            self.retire(older);
        }
        state.history.activated(&name, warden_store::now_ms());
        let summary = format!(
            "{name} is live{}; {} stays warm for {} for a quick rollback",
            if from_canary { " after its canary" } else { "" },
            previous.release.name,
            humantime::format_duration(self.settings.bake)
        );
        tracing::info!("{summary}");
        self.recorder.record(
            DEPLOYED,
            &name,
            serde_json::json!({
                "summary": summary,
                "from": previous.release.name,
                "switch_ms": switch_ms,
                "bake_ends_ms": bake_ends,
            }),
        );
        let controller = Arc::clone(self);
        let bake = self.settings.bake;
        tokio::spawn(async move {
            tokio::time::sleep(bake).await;
            controller.baked(&previous).await;
        });
        Outcome {
            action: "deployed".to_owned(),
            from: from_name,
            to: name,
            switch_ms,
            warm: false,
            summary,
        }
    }

    /// The bake window of the release that replaced `previous` has ended.
    async fn baked(&self, previous: &Arc<Pool>) {
        let mut state = self.state.lock().await;
        let still_warm = state
            .warm
            .as_ref()
            .is_some_and(|(p, _)| Arc::ptr_eq(p, previous));
        if still_warm {
            state.warm = None;
            let active = state.active.release.name.clone();
            self.recorder.record(
                "deploy.baked",
                &active,
                serde_json::json!({
                    "summary": format!("{active} passed its bake window; {} stopped", previous.release.name),
                    "stopped": previous.release.name,
                }),
            );
            self.retire(Arc::clone(previous));
        }
    }

    /// Drains and stops a pool in the background.
    fn retire(&self, pool: Arc<Pool>) {
        let deadline = self.settings.drain_timeout;
        tokio::spawn(async move { pool.drain(deadline).await });
    }

    /// `warden rollback`, or an automatic one.
    pub async fn rollback(
        self: &Arc<Self>,
        request: RollbackRequest,
        automatic: bool,
    ) -> Result<Outcome, Refusal> {
        let started = Instant::now();
        let reason = request.reason.clone().unwrap_or_else(|| {
            if automatic {
                "automatic rollback".to_owned()
            } else {
                "rolled back by an operator".to_owned()
            }
        });
        let mut state = self.state.lock().await;
        let active_name = state.active.release.name.clone();

        // A canary rolls back to the release that kept most of the traffic.
        if let Some(canary) = &state.canary
            && request.to.as_deref().is_none_or(|to| to == active_name)
        {
            let pool = Arc::clone(&canary.pool);
            state.canary = None;
            self.context
                .proxy
                .switch(Routes::to(Arc::clone(&state.active.upstream)));
            let switch_ms = millis(started.elapsed());
            state.generation += 1;
            let bad = pool.release.name.clone();
            state.history.bad.insert(bad.clone(), reason.clone());
            self.retire(pool);
            return Ok(self.rolled_back(&bad, &active_name, switch_ms, true, automatic, &reason));
        }

        let target = match &request.to {
            Some(to) => to.clone(),
            None => match (&state.warm, state.history.last_known_good()) {
                (Some((pool, _)), _) => pool.release.name.clone(),
                (None, Some(good)) => good.to_owned(),
                (None, None) => {
                    return Err(Refusal::Conflict(format!(
                        "there is no earlier good release to roll back to from {active_name}; \
                         name one with --to"
                    )));
                }
            },
        };
        if target == active_name {
            return Err(Refusal::Conflict(format!("{target} is already active")));
        }
        let warm = state
            .warm
            .as_ref()
            .filter(|(pool, _)| pool.release.name == target)
            .map(|(pool, _)| Arc::clone(pool));
        let (pool, was_warm) = match warm {
            Some(pool) => {
                state.warm = None;
                (pool, true)
            }
            None => {
                let release = self.release(&target)?;
                let pool = Pool::start(&release, &self.settings, &self.context)
                    .map_err(|e| Refusal::Failed(format!("{e:#}")))?;
                if let Err(why) = pool.wait_ready(self.settings.ready_timeout).await {
                    self.retire(pool);
                    return Err(Refusal::Failed(format!(
                        "{target} did not get ready, so traffic stays on {active_name}: {why}"
                    )));
                }
                (pool, false)
            }
        };
        if !was_warm && let Some((older, _)) = state.warm.take() {
            self.retire(older);
        }
        self.context
            .proxy
            .switch(Routes::to(Arc::clone(&pool.upstream)));
        let switch_ms = millis(started.elapsed());
        state.generation += 1;
        let previous = std::mem::replace(&mut state.active, pool);
        state.history.activated(&target, warden_store::now_ms());
        state
            .history
            .bad
            .insert(active_name.clone(), reason.clone());
        self.retire(previous);
        Ok(self.rolled_back(
            &active_name,
            &target,
            switch_ms,
            was_warm,
            automatic,
            &reason,
        ))
    }

    /// Records a rollback (after the fact: the switch never waits for the store).
    fn rolled_back(
        &self,
        from: &str,
        to: &str,
        switch_ms: f64,
        warm: bool,
        automatic: bool,
        reason: &str,
    ) -> Outcome {
        let summary = format!(
            "{} rollback from {from} to {to} in {switch_ms:.2} ms{}: {reason}",
            if automatic { "automatic" } else { "manual" },
            if warm { "" } else { " (started cold)" },
        );
        tracing::warn!("{summary}");
        self.recorder.record(
            ROLLED_BACK,
            to,
            serde_json::json!({
                "summary": summary,
                "from": from,
                "automatic": automatic,
                "reason": reason,
                "switch_ms": switch_ms,
                "warm": warm,
            }),
        );
        self.recorder.record(
            MARKED_BAD,
            from,
            serde_json::json!({
                "summary": format!("{from} marked bad: {reason}"),
                "reason": reason,
                "automatic": automatic,
            }),
        );
        Outcome {
            action: "rolled back".to_owned(),
            from: from.to_owned(),
            to: to.to_owned(),
            switch_ms,
            warm,
            summary,
        }
    }

    /// Stops every instance gracefully (SIGTERM, in-flight requests finish), for
    /// when `warden up` stops, then stores the client windows, the current partial
    /// one included.
    pub async fn shutdown(&self) {
        let state = self.state.lock().await;
        let mut stopping = tokio::task::JoinSet::new();
        for pool in std::iter::once(&state.active)
            .chain(state.warm.as_ref().map(|(p, _)| p))
            .chain(state.canary.as_ref().map(|c| &c.pool))
        {
            let pool = Arc::clone(pool);
            stopping.spawn(async move { pool.drain(Duration::from_secs(5)).await });
        }
        stopping.join_all().await;
        drop(state);
        self.store_client_windows(self.context.proxy.take_all_windows())
            .await;
    }

    /// Rolls back automatically when an alert of the policy fires on a release in
    /// its bake window or canary. Runs until the alert stream ends.
    pub async fn watch_alerts(
        self: Arc<Self>,
        mut alerts: tokio::sync::broadcast::Receiver<Transition>,
    ) {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            let transition = match alerts.recv().await {
                Ok(t) => t,
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "automatic rollback missed alert transitions");
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            if transition.phase != Phase::Firing
                || !self.settings.rollback_on.contains(transition.alert)
            {
                continue;
            }
            let baking = {
                let state = self.state.lock().await;
                let canary = state
                    .canary
                    .as_ref()
                    .is_some_and(|c| c.pool.release.name == transition.release);
                let in_bake =
                    state.warm.is_some() && state.active.release.name == transition.release;
                canary || in_bake
            };
            if !baking {
                continue;
            }
            let request = RollbackRequest {
                to: None,
                reason: Some(format!(
                    "{} fired: {}",
                    transition.alert, transition.summary
                )),
            };
            match self.rollback(request, true).await {
                Ok(outcome) => tracing::warn!("{}", outcome.summary),
                Err(error) => tracing::error!(%error, "automatic rollback failed"),
            }
        }
    }
}

/// Checks that `report` is a passing `warden gate` report of exactly `old` → `new`'s
/// dependency change.
fn check_gate(
    report: Option<&serde_json::Value>,
    old: &Release,
    new: &Release,
) -> Result<(), String> {
    let old_set: BTreeSet<(&str, &str)> = old
        .dependencies
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let new_set: BTreeSet<(&str, &str)> = new
        .dependencies
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let removed: BTreeSet<_> = old_set.difference(&new_set).copied().collect();
    let added: BTreeSet<_> = new_set.difference(&old_set).copied().collect();
    let names: BTreeSet<&str> = removed.iter().chain(&added).map(|(n, _)| *n).collect();
    let listed: Vec<&str> = names.iter().take(5).copied().collect();
    let change = format!(
        "the dependencies changed from {} to {} ({}{})",
        old.name,
        new.name,
        listed.join(", "),
        if names.len() > 5 { ", …" } else { "" }
    );
    let Some(report) = report else {
        return Err(format!(
            "{change}: a passing `warden gate` report of the pair is required (--gate DIR/gate.json)"
        ));
    };
    if report["verdict"] != "pass" {
        return Err(format!(
            "{change} and the gate report's verdict is {}, not pass",
            report["verdict"]
        ));
    }
    let mut report_removed = BTreeSet::new();
    let mut report_added = BTreeSet::new();
    for change in report["dependency_changes"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let name = change["name"].as_str().unwrap_or_default();
        if let Some(old) = change["old"].as_str() {
            report_removed.insert((name, old));
        }
        if let Some(new) = change["new"].as_str() {
            report_added.insert((name, new));
        }
    }
    if report_removed != removed || report_added != added {
        return Err(format!(
            "{change}, but the gate report is of a different pair of lockfiles \
             (run `warden gate` on these two releases' binaries)"
        ));
    }
    Ok(())
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Writes deploy events in order, off the deploy path. A store that fails is retried
/// with backoff (up to about a minute per event) so a rollback made while the store
/// was failing still reaches the log, with the time it happened.
#[derive(Clone)]
struct Recorder {
    queue: tokio::sync::mpsc::Sender<(i64, NewEvent)>,
}

impl Recorder {
    fn start(store: Store) -> Self {
        let (queue, mut events) = tokio::sync::mpsc::channel::<(i64, NewEvent)>(1024);
        tokio::spawn(async move {
            while let Some((at_ms, event)) = events.recv().await {
                let mut delay = Duration::from_millis(250);
                for attempt in 1..=8 {
                    let e = event.clone();
                    match store.blocking(move |s| s.append_event_at(at_ms, &e)).await {
                        Ok(_) => break,
                        Err(error) if attempt == 8 => {
                            tracing::error!(%error, kind = %event.kind, "could not record a deploy event; giving up on it");
                        }
                        Err(error) => {
                            tracing::warn!(%error, kind = %event.kind, "could not record a deploy event; retrying in {delay:?}");
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(Duration::from_secs(16));
                        }
                    }
                }
            }
        });
        Self { queue }
    }

    /// Queues an event; never waits.
    fn record(&self, kind: &str, release: &str, payload: serde_json::Value) {
        let event = NewEvent {
            kind: kind.to_owned(),
            release: Some(release.to_owned()),
            payload,
        };
        if self
            .queue
            .try_send((warden_store::now_ms(), event))
            .is_err()
        {
            tracing::error!(kind, "the deploy event queue is full; an event is lost");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn release(name: &str, deps: &[(&str, &str)]) -> Release {
        Release {
            name: name.to_owned(),
            added_ms: 0,
            version: String::new(),
            git_commit: String::new(),
            build_lockfile_sha256: String::new(),
            lockfile_sha256: name.to_owned(),
            binary_sha256: String::new(),
            binary_path: String::new(),
            args: vec![],
            dependencies: deps
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn a_gate_report_must_pass_and_be_of_the_same_pair() {
        let old = release("v1", &[("serde_json", "1.0.100"), ("tokio", "1.40.0")]);
        let new = release("v2", &[("serde_json", "1.0.101"), ("tokio", "1.40.0")]);
        let report = |verdict: &str, new_version: &str| {
            serde_json::json!({
                "verdict": verdict,
                "dependency_changes": [
                    {"name": "serde_json", "old": "1.0.100", "new": new_version, "kind": "upgraded"}
                ]
            })
        };
        assert!(check_gate(Some(&report("pass", "1.0.101")), &old, &new).is_ok());
        let missing = check_gate(None, &old, &new).unwrap_err();
        assert!(
            missing.contains("serde_json") && missing.contains("--gate"),
            "{missing}"
        );
        let failed = check_gate(Some(&report("fail", "1.0.101")), &old, &new).unwrap_err();
        assert!(failed.contains("not pass"), "{failed}");
        let other = check_gate(Some(&report("pass", "1.0.102")), &old, &new).unwrap_err();
        assert!(other.contains("different pair"), "{other}");
    }
}
