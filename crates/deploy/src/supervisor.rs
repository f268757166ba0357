//! Runs one API instance as a child process and keeps it running.
//!
//! The instance is started with `api --listen ADDR --data-dir DIR` plus the release's
//! arguments. Once it answers `/readyz` the proxy may send it requests and the
//! monitor scrapes it (with its pid, so RSS comes from `/proc`). When it exits it is
//! taken out of the proxy at once and restarted with exponential backoff (1 s
//! doubling to 30 s, reset after a minute of healthy running). Asked to stop, it gets
//! SIGTERM (the API finishes its requests) and SIGKILL after a grace period.
//!
//! The child stops by itself if the supervisor dies without stopping it (kill -9): it
//! is told the supervisor's pid in `WARDEN_SUPERVISOR_PID` and watches for
//! re-parenting. It is also given the proxy's forwarding secret in
//! `WARDEN_PROXY_SECRET` (see [`crate::proxy`]), so that it believes the client
//! address the proxy forwards and nobody else's, and the connection deadlines
//! `warden up` was given (`WARDEN_HEADER_READ_TIMEOUT`, `WARDEN_IDLE_TIMEOUT`). Its
//! stderr is passed through, and the last lines are kept to say why an instance
//! that failed to start failed.
//! Every start, exit and stop is an event in the store (`instance.started` with the
//! command line, `instance.exited`, `instance.stopped`), written in the background;
//! a store that fails is logged and never stops the supervisor, and delays a stop
//! by two seconds at most.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncBufReadExt;
use tokio::sync::watch;
use warden_monitor::scrape::Target;
use warden_store::kinds::{INSTANCE_EXITED, INSTANCE_STARTED, INSTANCE_STOPPED};
use warden_store::{NewEvent, Store};

use crate::proxy::{Backend, Proxy};

/// How long a stopping instance gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The variable that tells an instance its supervisor's pid.
pub const SUPERVISOR_ENV: &str = "WARDEN_SUPERVISOR_PID";

/// How long a stop waits for its `instance.stopped` event to be written.
const RECORD_WAIT: Duration = Duration::from_secs(2);

/// What to run.
#[derive(Debug, Clone)]
pub struct InstanceSpec {
    /// The `warden` binary of the release.
    pub bin: PathBuf,
    /// The release name (the `release` label and the events' release).
    pub release: String,
    /// Where the instance listens.
    pub listen: std::net::SocketAddr,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Extra arguments after `api --listen … --data-dir …`.
    pub args: Vec<String>,
    /// Its deadlines for slow and idle connections, given in the environment
    /// ([`HEADER_READ_TIMEOUT_ENV`], [`IDLE_TIMEOUT_ENV`]): a release recorded from
    /// an older binary, which has no such flags, still starts, and a release's own
    /// flags win (a key in its `--config` file does not).
    pub connection_timeouts: warden_telemetry::serve::Timeouts,
}

/// The variable an instance reads its header-read timeout from (`warden api
/// --header-read-timeout`).
pub const HEADER_READ_TIMEOUT_ENV: &str = "WARDEN_HEADER_READ_TIMEOUT";

/// The variable an instance reads its idle timeout from (`warden api --idle-timeout`).
pub const IDLE_TIMEOUT_ENV: &str = "WARDEN_IDLE_TIMEOUT";

/// What the supervisors of all instances share.
#[derive(Clone)]
pub struct Context {
    /// Where events go (best effort).
    pub store: Store,
    /// The monitor's scrape targets: an instance is listed while it runs.
    pub targets: Arc<watch::Sender<Vec<Target>>>,
    /// Told when an instance becomes ready.
    pub proxy: Arc<Proxy>,
}

/// How an instance has fared: exits so far and the last one's story.
#[derive(Debug, Default)]
pub struct Health {
    exits: AtomicU32,
    last_exit: Mutex<Option<String>>,
}

impl Health {
    /// How many times the instance has exited.
    #[must_use]
    pub fn exits(&self) -> u32 {
        self.exits.load(Ordering::SeqCst)
    }

    /// The last exit: its code and the last lines the instance wrote to stderr.
    #[must_use]
    pub fn last_exit(&self) -> Option<String> {
        self.last_exit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Runs `spec` until `stop` turns true (then stops the child gracefully) or the task
/// is dropped (which kills it).
pub async fn supervise(
    spec: InstanceSpec,
    backend: Arc<Backend>,
    health: Arc<Health>,
    context: Context,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_secs(1);
    let instance = spec.listen.to_string();
    loop {
        let started = tokio::time::Instant::now();
        let mut child = match tokio::process::Command::new(&spec.bin)
            .arg("api")
            .arg("--listen")
            .arg(&instance)
            .arg("--data-dir")
            .arg(&spec.data_dir)
            .args(&spec.args)
            .env(SUPERVISOR_ENV, std::process::id().to_string())
            // Lets the instance believe the proxy's X-Forwarded-For; in the
            // environment because a command line is readable by every local user.
            .env(crate::proxy::SECRET_ENV, context.proxy.forwarding_secret())
            .env(
                HEADER_READ_TIMEOUT_ENV,
                humantime::format_duration(spec.connection_timeouts.header_read).to_string(),
            )
            .env(
                IDLE_TIMEOUT_ENV,
                humantime::format_duration(spec.connection_timeouts.idle).to_string(),
            )
            // `warden up`'s own config file is not the API's.
            .env_remove("WARDEN_CONFIG")
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
        {
            Ok(child) => child,
            Err(error) => {
                let story = format!("cannot start {}: {error}", spec.bin.display());
                tracing::error!(%instance, "{story}");
                exited(&health, story);
                if sleep_or_stop(backoff, &mut stop).await {
                    return;
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let reader = child
            .stderr
            .take()
            .map(|stderr| tokio::spawn(pass_through(stderr, Arc::clone(&tail))));
        let pid = child.id();
        record(
            &context.store,
            INSTANCE_STARTED,
            &spec,
            // The command line lets a restarted control plane tell this instance,
            // orphaned, from a process that got its pid later.
            serde_json::json!({ "pid": pid, "command": command_line(&spec) }),
        );
        let ready = tokio::select! {
            ready = wait_ready(&instance, &mut child) => ready,
            () = stopped(&mut stop) => {
                terminate(&mut child).await;
                record_stop(&context.store, &spec, pid).await;
                return;
            }
        };
        if ready {
            tracing::info!(%instance, release = %spec.release, "instance ready");
            backend.set_ready(true);
            context.proxy.instance_ready();
        }
        // Published once ready (or given up on), so start-up is not a "target down";
        // an instance that never gets ready is published anyway, and alerts as down.
        let target = Target {
            instance: instance.clone(),
            url: format!("http://{instance}/metrics"),
            release: spec.release.clone(),
            pid,
        };
        context.targets.send_modify(|list| {
            list.retain(|t| t.instance != instance);
            list.push(target);
        });
        let status = tokio::select! {
            status = child.wait() => status,
            () = stopped(&mut stop) => {
                backend.set_ready(false);
                terminate(&mut child).await;
                unpublish(&context, &instance);
                record_stop(&context.store, &spec, pid).await;
                return;
            }
        };
        backend.set_ready(false);
        // Its last words may still be in the pipe: read them before telling the story.
        if let Some(reader) = reader {
            let _ = tokio::time::timeout(Duration::from_secs(1), reader).await;
        }
        let code = status
            .as_ref()
            .ok()
            .and_then(std::process::ExitStatus::code);
        let last_lines: Vec<String> = tail
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .cloned()
            .collect();
        let how = code.map_or_else(
            || "was killed by a signal".to_owned(),
            |c| format!("exited with code {c}"),
        );
        // An error line says more than the usual closing hint ("For more information…").
        let telling = last_lines
            .iter()
            .rev()
            .find(|l| l.to_ascii_lowercase().contains("error"))
            .or(last_lines.last());
        let story = match telling {
            Some(line) => format!("instance {instance} {how}; its last words: {line}"),
            None => format!("instance {instance} {how}"),
        };
        exited(&health, story);
        tracing::warn!(%instance, ?code, "instance exited; restarting in {backoff:?}");
        record(
            &context.store,
            INSTANCE_EXITED,
            &spec,
            serde_json::json!({
                "pid": pid,
                "exit_code": code,
                "restart_in_ms": backoff.as_millis() as u64,
                "stderr_tail": last_lines,
            }),
        );
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_secs(1);
        }
        if sleep_or_stop(backoff, &mut stop).await {
            unpublish(&context, &instance);
            return;
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

fn exited(health: &Health, story: String) {
    health.exits.fetch_add(1, Ordering::SeqCst);
    *health
        .last_exit
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(story);
}

fn unpublish(context: &Context, instance: &str) {
    context
        .targets
        .send_modify(|list| list.retain(|t| t.instance != instance));
}

/// Sleeps `duration`; true when told to stop meanwhile.
async fn sleep_or_stop(duration: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(duration) => false,
        () = stopped(stop) => true,
    }
}

/// Completes when told to stop (or when whoever could tell is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: drop it here.
    let _ = stop.wait_for(|stop| *stop).await.map(|_| ());
}

/// SIGTERM, then SIGKILL after [`STOP_GRACE`].
async fn terminate(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
        if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_ok() {
            return;
        }
    }
    let _ = child.kill().await;
}

/// Copies the child's stderr to ours, keeping the last lines.
async fn pass_through(stderr: tokio::process::ChildStderr, tail: Arc<Mutex<VecDeque<String>>>) {
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        eprintln!("{line}");
        let mut tail = tail
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if tail.len() == 20 {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}

/// Waits up to a minute for `/readyz`; false when the child died or never got ready.
async fn wait_ready(instance: &str, child: &mut tokio::process::Child) -> bool {
    let client = reqwest::Client::new();
    for _ in 0..600 {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return false;
        }
        if let Ok(response) = client.get(format!("http://{instance}/readyz")).send().await
            && response.status().is_success()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The instance's command line as it is started: the binary, then its arguments.
fn command_line(spec: &InstanceSpec) -> Vec<String> {
    let mut argv = vec![
        spec.bin.to_string_lossy().into_owned(),
        "api".to_owned(),
        "--listen".to_owned(),
        spec.listen.to_string(),
        "--data-dir".to_owned(),
        spec.data_dir.to_string_lossy().into_owned(),
    ];
    argv.extend(spec.args.iter().cloned());
    argv
}

/// Appends an event without waiting for it: a slow or failing store never delays
/// a start or a restart.
fn record(
    store: &Store,
    kind: &str,
    spec: &InstanceSpec,
    payload: serde_json::Value,
) -> tokio::task::JoinHandle<()> {
    let mut payload = payload;
    payload["instance"] = spec.listen.to_string().into();
    payload["summary"] = format!("{kind} {}", spec.listen).into();
    let event = NewEvent {
        kind: kind.to_owned(),
        release: Some(spec.release.clone()),
        payload,
    };
    let (store, kind, at_ms) = (store.clone(), kind.to_owned(), warden_store::now_ms());
    tokio::spawn(async move {
        if let Err(error) = store
            .blocking(move |s| s.append_event_at(at_ms, &event))
            .await
        {
            tracing::warn!(%error, "could not record {kind}");
        }
    })
}

/// Records that the instance was stopped on request, waiting (briefly) for the
/// write: when `warden up` stops, it must be in the log before `control.stopped`.
async fn record_stop(store: &Store, spec: &InstanceSpec, pid: Option<u32>) {
    let write = record(
        store,
        INSTANCE_STOPPED,
        spec,
        serde_json::json!({ "pid": pid }),
    );
    if tokio::time::timeout(RECORD_WAIT, write).await.is_err() {
        tracing::warn!(instance = %spec.listen, "the store is slow: instance.stopped is written later");
    }
}
