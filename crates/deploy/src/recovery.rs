//! The control plane's own runs in the event log, so a crash leaves no hole in it.
//!
//! `warden up` records `control.started` when it starts and `control.stopped` when
//! it stops cleanly, after its instances have stopped (each with `instance.stopped`).
//! A `control.started` with no `control.stopped` after it means the run before this
//! one ended without stopping: kill -9, the OOM killer, a power cut. On start,
//! [`recover`] then closes what that run left open:
//!
//! - every instance it had running (an `instance.started` with no exit, stop or loss
//!   after it) gets `instance.lost` when it is found dead;
//! - one still alive — an orphan that has not yet noticed its supervisor is gone, or
//!   is hung — is stopped (SIGTERM, SIGKILL after a grace period) and gets
//!   `instance.stopped`. A process is taken for that orphan only when its command
//!   line is exactly the one recorded when it started and its environment names the
//!   crashed run's pid as its supervisor, so a recycled pid of another program is
//!   never signalled;
//! - one `control.restarted` event says what happened: when the crashed run started,
//!   its last record (event or scraped sample: about when it died), and the instances
//!   found dead or stopped. The dashboard marks it and the postmortem's timeline
//!   shows it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use warden_store::kinds::{
    CONTROL_RESTARTED, CONTROL_STARTED, CONTROL_STOPPED, INSTANCE_EXITED, INSTANCE_LOST,
    INSTANCE_STARTED, INSTANCE_STOPPED,
};
use warden_store::{Event, EventFilter, NewEvent, Store};

/// How long an orphan gets between SIGTERM and SIGKILL.
const ORPHAN_GRACE: Duration = Duration::from_secs(5);

/// This run of `warden up`, as `control.started` records it.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// Its process id.
    pub pid: u32,
    /// The build: version and git commit.
    pub version: String,
    /// Where users reach it and where its console is.
    pub listen: String,
    /// The console's address.
    pub console: String,
}

/// An instance the crashed run had running.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Left {
    /// Its release.
    pub release: Option<String>,
    /// Its process id.
    pub pid: u32,
    /// Where it listened.
    pub instance: String,
    /// `dead` (found gone) or `stopped` (found alive, orphaned, and stopped).
    pub found: &'static str,
}

/// What [`recover`] found.
#[derive(Debug, Clone, Serialize)]
pub struct Recovered {
    /// The `control.restarted` event it appended.
    pub event: Event,
    /// The instances of the crashed run.
    pub left: Vec<Left>,
}

/// Records that this run started, after recovering from the previous one when it
/// did not stop cleanly. Returns what was recovered, if anything was.
///
/// # Errors
/// When the store cannot be read or written.
pub fn start(store: &Store, run: &Run) -> warden_store::Result<Option<Recovered>> {
    let recovered = recover(store, run)?;
    store.append_event(&NewEvent {
        kind: CONTROL_STARTED.to_owned(),
        release: None,
        payload: serde_json::json!({
            "pid": run.pid,
            "version": run.version,
            "listen": run.listen,
            "console": run.console,
            "summary": format!("control plane started (pid {})", run.pid),
        }),
    })?;
    Ok(recovered)
}

/// Records that this run stopped cleanly (its instances stopped), or with `error`.
///
/// # Errors
/// When the store cannot be written.
pub fn stopped(store: &Store, run: &Run, error: Option<&str>) -> warden_store::Result<()> {
    let summary = match error {
        None => format!("control plane stopped (pid {})", run.pid),
        Some(error) => format!(
            "control plane stopped on an error (pid {}): {error}",
            run.pid
        ),
    };
    store.append_event(&NewEvent {
        kind: CONTROL_STOPPED.to_owned(),
        release: None,
        payload: serde_json::json!({ "pid": run.pid, "error": error, "summary": summary }),
    })?;
    Ok(())
}

/// When the last run did not stop cleanly: closes its instances and appends
/// `control.restarted` (see the module's documentation). `None` when it stopped
/// cleanly or there was none.
///
/// # Errors
/// When the store cannot be read or written.
pub fn recover(store: &Store, run: &Run) -> warden_store::Result<Option<Recovered>> {
    let Some(previous) = store
        .events(&EventFilter {
            kind_prefix: Some(CONTROL_STARTED.to_owned()),
            newest: Some(1),
            ..EventFilter::default()
        })?
        .into_iter()
        .next()
    else {
        return Ok(None);
    };
    let since = |prefix: &str| {
        store.events(&EventFilter {
            since_ms: Some(previous.at_ms),
            kind_prefix: Some(prefix.to_owned()),
            ..EventFilter::default()
        })
    };
    let after = |e: &Event| e.id > previous.id;
    if since(CONTROL_STOPPED)?.iter().any(after) {
        return Ok(None);
    }
    let previous_pid = previous.payload["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok());

    // The instances it had running: started, and not closed since.
    let mut running: BTreeMap<(u32, String), Event> = BTreeMap::new();
    for event in since("instance.")?.into_iter().filter(after) {
        let Some(key) = instance_key(&event) else {
            continue;
        };
        match event.kind.as_str() {
            INSTANCE_STARTED => {
                running.insert(key, event);
            }
            INSTANCE_EXITED | INSTANCE_STOPPED | INSTANCE_LOST => {
                running.remove(&key);
            }
            _ => {}
        }
    }

    let last_event_ms = store
        .events(&EventFilter {
            newest: Some(1),
            ..EventFilter::default()
        })?
        .first()
        .map(|e| e.at_ms);
    let last_sample_ms = store.last_sample_ms()?;
    let last_seen_ms = last_event_ms.max(last_sample_ms).unwrap_or(previous.at_ms);

    let mut left = Vec::new();
    for ((pid, instance), started) in &running {
        let command: Vec<String> = started.payload["command"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let orphan = previous_pid.is_some_and(|supervisor| is_orphan(*pid, &command, supervisor));
        let found = if orphan {
            stop_orphan(*pid);
            "stopped"
        } else {
            "dead"
        };
        let what = format!(
            "instance {instance} (pid {pid}) of {}",
            started.release.as_deref().unwrap_or("an unknown release")
        );
        let (kind, summary) = if orphan {
            (
                INSTANCE_STOPPED,
                format!("{what} outlived the crashed control plane: stopped"),
            )
        } else {
            (
                INSTANCE_LOST,
                format!("{what} was found dead: it went down with the control plane"),
            )
        };
        store.append_event(&NewEvent {
            kind: kind.to_owned(),
            release: started.release.clone(),
            payload: serde_json::json!({
                "pid": pid,
                "instance": instance,
                "orphan": orphan,
                "last_seen_ms": last_seen_ms,
                "summary": summary,
            }),
        })?;
        left.push(Left {
            release: started.release.clone(),
            pid: *pid,
            instance: instance.clone(),
            found,
        });
    }

    let now = warden_store::now_ms();
    let summary = restart_summary(&left, now.saturating_sub(last_seen_ms));
    tracing::warn!(
        previous_pid,
        lost = left.iter().filter(|l| l.found == "dead").count(),
        stopped = left.iter().filter(|l| l.found == "stopped").count(),
        "{summary}"
    );
    let event = store.append_event(&NewEvent {
        kind: CONTROL_RESTARTED.to_owned(),
        release: None,
        payload: serde_json::json!({
            "pid": run.pid,
            "previous_pid": previous_pid,
            "previous_started_ms": previous.at_ms,
            "previous_event_id": previous.id,
            "last_event_ms": last_event_ms,
            "last_sample_ms": last_sample_ms,
            "last_seen_ms": last_seen_ms,
            "clean_stop": false,
            "instances": left,
            "summary": summary,
        }),
    })?;
    Ok(Some(Recovered { event, left }))
}

/// `(pid, instance)` of an instance event.
fn instance_key(event: &Event) -> Option<(u32, String)> {
    let pid = u32::try_from(event.payload["pid"].as_u64()?).ok()?;
    let instance = event.payload["instance"].as_str()?.to_owned();
    Some((pid, instance))
}

/// "control plane restarted after a crash (…); 2 instances of v2 found dead".
fn restart_summary(left: &[Left], down_ms: i64) -> String {
    let mut text = format!(
        "control plane restarted after a crash (its last record was {} before)",
        humantime::format_duration(Duration::from_secs(
            u64::try_from(down_ms / 1000).unwrap_or(0)
        ))
    );
    if left.is_empty() {
        text.push_str("; no instance was left running");
        return text;
    }
    for found in ["dead", "stopped"] {
        let mut per_release: BTreeMap<&str, usize> = BTreeMap::new();
        for l in left.iter().filter(|l| l.found == found) {
            *per_release
                .entry(l.release.as_deref().unwrap_or("an unknown release"))
                .or_default() += 1;
        }
        if per_release.is_empty() {
            continue;
        }
        let parts: Vec<String> = per_release
            .iter()
            .map(|(release, n)| {
                format!(
                    "{n} instance{} of {release}",
                    if *n == 1 { "" } else { "s" }
                )
            })
            .collect();
        text.push_str("; ");
        text.push_str(&parts.join(" and "));
        text.push_str(if found == "dead" {
            " found dead"
        } else {
            " found still running (orphaned) and stopped"
        });
    }
    text
}

/// Whether `pid` is the orphaned instance that was started as `command` by the
/// crashed supervisor: its command line is exactly the recorded one and its
/// environment names that supervisor. A zombie or another program is not.
fn is_orphan(pid: u32, command: &[String], supervisor: u32) -> bool {
    if command.is_empty() || !alive(pid) {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let argv: Vec<&[u8]> = cmdline
        .strip_suffix(&[0])
        .unwrap_or(&cmdline)
        .split(|b| *b == 0)
        .collect();
    if argv.len() != command.len() || argv.iter().zip(command).any(|(a, c)| *a != c.as_bytes()) {
        return false;
    }
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let wanted = format!("{}={supervisor}", crate::supervisor::SUPERVISOR_ENV);
    environ
        .split(|b| *b == 0)
        .any(|var| var == wanted.as_bytes())
}

/// Whether `pid` exists and is not a zombie waiting to be reaped.
fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "pid (comm) S ...": the state follows the last ')'.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, None | Some('Z' | 'X' | 'x'))
}

/// SIGTERM (and SIGCONT, in case it was stopped), SIGKILL after [`ORPHAN_GRACE`].
fn stop_orphan(pid: u32) {
    use nix::sys::signal::{Signal, kill};
    let Ok(raw) = i32::try_from(pid) else {
        return;
    };
    let target = nix::unistd::Pid::from_raw(raw);
    tracing::warn!(
        pid,
        "stopping an instance the crashed control plane left running"
    );
    let _ = kill(target, Signal::SIGTERM);
    let _ = kill(target, Signal::SIGCONT);
    let deadline = Instant::now() + ORPHAN_GRACE;
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if alive(pid) {
        let _ = kill(target, Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(2);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn run(pid: u32) -> Run {
        Run {
            pid,
            version: "0.1.0-test".into(),
            listen: "127.0.0.1:1".into(),
            console: "127.0.0.1:2".into(),
        }
    }

    fn instance(store: &Store, kind: &str, release: &str, pid: u32, instance: &str) {
        store
            .append_event(&NewEvent {
                kind: kind.into(),
                release: Some(release.into()),
                payload: serde_json::json!({
                    "pid": pid,
                    "instance": instance,
                    // Nothing runs as this: never taken for an orphan.
                    "command": ["/nonexistent/warden", "api", "--listen", instance],
                }),
            })
            .unwrap();
    }

    #[test]
    fn a_clean_stop_or_a_first_start_records_no_restart() {
        let store = Store::in_memory().unwrap();
        assert!(start(&store, &run(10)).unwrap().is_none());
        instance(&store, INSTANCE_STARTED, "v1", 4_000_001, "127.0.0.1:7001");
        instance(&store, INSTANCE_STOPPED, "v1", 4_000_001, "127.0.0.1:7001");
        stopped(&store, &run(10), None).unwrap();
        assert!(start(&store, &run(11)).unwrap().is_none());
        let kinds: Vec<String> = store
            .events(&EventFilter::default())
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert!(!kinds.iter().any(|k| k == CONTROL_RESTARTED), "{kinds:?}");
    }

    #[test]
    fn a_crash_is_recorded_with_the_instances_it_left_dead() {
        let store = Store::in_memory().unwrap();
        start(&store, &run(10)).unwrap();
        // v2's two instances, one restarted once (its first pid exited); v1's
        // instance drained and stopped by a deploy.
        instance(&store, INSTANCE_STARTED, "v1", 4_000_001, "127.0.0.1:7001");
        instance(&store, INSTANCE_STARTED, "v2", 4_000_002, "127.0.0.1:7002");
        instance(&store, INSTANCE_STARTED, "v2", 4_000_003, "127.0.0.1:7003");
        instance(&store, INSTANCE_EXITED, "v2", 4_000_003, "127.0.0.1:7003");
        instance(&store, INSTANCE_STARTED, "v2", 4_000_004, "127.0.0.1:7003");
        instance(&store, INSTANCE_STOPPED, "v1", 4_000_001, "127.0.0.1:7001");
        // kill -9: no control.stopped.
        let recovered = start(&store, &run(11)).unwrap().expect("a restart");
        let pids: Vec<(u32, &str)> = recovered.left.iter().map(|l| (l.pid, l.found)).collect();
        assert_eq!(pids, [(4_000_002, "dead"), (4_000_004, "dead")]);
        let p = &recovered.event.payload;
        assert_eq!(p["previous_pid"], 10);
        assert_eq!(p["clean_stop"], false);
        let summary = p["summary"].as_str().unwrap();
        assert!(
            summary.starts_with("control plane restarted after a crash")
                && summary.ends_with("; 2 instances of v2 found dead"),
            "{summary}"
        );
        let lost: Vec<Event> = store
            .events(&EventFilter {
                kind_prefix: Some(INSTANCE_LOST.into()),
                ..EventFilter::default()
            })
            .unwrap();
        assert_eq!(lost.len(), 2);
        assert_eq!(lost[0].release.as_deref(), Some("v2"));
        // Closed once: a crash of run 11 now finds none of them open.
        let again = recover(&store, &run(12))
            .unwrap()
            .expect("run 11 did not stop");
        assert!(again.left.is_empty(), "{:?}", again.left);
    }

    #[test]
    fn another_program_on_a_recorded_pid_is_not_taken_for_an_orphan() {
        // This test process: alive, but neither the recorded command nor a child of
        // the crashed supervisor.
        let me = std::process::id();
        let command = vec!["/nonexistent/warden".to_owned(), "api".to_owned()];
        assert!(!is_orphan(me, &command, 1));
        let mine: Vec<String> = std::fs::read(format!("/proc/{me}/cmdline"))
            .unwrap()
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        assert!(alive(me));
        assert!(
            !is_orphan(me, &mine, std::os::unix::process::parent_id()),
            "its environment names no supervisor"
        );
    }
}
