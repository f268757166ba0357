//! Runs one API instance as a child process and keeps it running.
//!
//! The instance is started with `api --listen ADDR --data-dir DIR` plus extra
//! arguments, and is published as a scrape target (with its pid, so the monitor reads
//! its RSS from `/proc`) once it answers `/readyz` or a minute has passed. When it
//! exits it is restarted with exponential backoff (1 s doubling to 30 s, reset after
//! a minute of healthy running). The child is killed when the supervisor stops, and
//! stops by itself if the supervisor dies without stopping it (kill -9): it is told
//! the supervisor's pid in `WARDEN_SUPERVISOR_PID` and watches for re-parenting. Every start and exit is an event in the store; a store that fails to
//! write is logged and never stops the supervisor.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::sync::watch;
use warden_monitor::scrape::Target;
use warden_store::{NewEvent, Store};

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
}

/// Runs `spec` until the task is dropped (which kills the child), publishing the
/// instance in `targets` while it is ready.
pub async fn supervise(
    spec: InstanceSpec,
    store: Store,
    targets: watch::Sender<Vec<Target>>,
) -> anyhow::Result<()> {
    let mut backoff = Duration::from_secs(1);
    let instance = spec.listen.to_string();
    loop {
        let started = tokio::time::Instant::now();
        let mut child = tokio::process::Command::new(&spec.bin)
            .arg("api")
            .arg("--listen")
            .arg(&instance)
            .arg("--data-dir")
            .arg(&spec.data_dir)
            .args(&spec.args)
            .env("WARDEN_SUPERVISOR_PID", std::process::id().to_string())
            // `warden up`'s own config file is not the API's.
            .env_remove("WARDEN_CONFIG")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", spec.bin.display()))?;
        let pid = child.id();
        let target = Target {
            instance: instance.clone(),
            url: format!("http://{instance}/metrics"),
            release: spec.release.clone(),
            pid,
        };
        record(
            &store,
            "instance.started",
            &spec,
            serde_json::json!({ "pid": pid }),
        )
        .await;
        let ready = wait_ready(&instance, &mut child).await;
        if ready {
            tracing::info!(%instance, release = %spec.release, "instance ready");
        }
        // Published once ready (or given up on), so start-up is not a "target down";
        // an instance that never gets ready is published anyway, and alerts as down.
        targets.send_modify(|list| {
            list.retain(|t| t.instance != instance);
            list.push(target);
        });
        let status = child.wait().await;
        let code = status
            .as_ref()
            .ok()
            .and_then(std::process::ExitStatus::code);
        tracing::warn!(%instance, ?code, "instance exited; restarting in {backoff:?}");
        record(
            &store,
            "instance.exited",
            &spec,
            serde_json::json!({ "pid": pid, "exit_code": code, "restart_in_ms": backoff.as_millis() as u64 }),
        )
        .await;
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_secs(1);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
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

async fn record(store: &Store, kind: &str, spec: &InstanceSpec, payload: serde_json::Value) {
    let mut payload = payload;
    payload["instance"] = spec.listen.to_string().into();
    payload["summary"] = format!("{kind} {}", spec.listen).into();
    let event = NewEvent {
        kind: kind.to_owned(),
        release: Some(spec.release.clone()),
        payload,
    };
    if let Err(error) = store.blocking(move |s| s.append_event(&event)).await {
        tracing::warn!(%error, "could not record {kind}");
    }
}
