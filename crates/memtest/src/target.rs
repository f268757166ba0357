//! The service under test: an API process this crate starts (on a fresh data dir and
//! a free loopback port) or one that is already running, and how to read its memory.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;

/// A running API: started here (and stopped when dropped) or found at a URL.
pub struct Target {
    pub base: String,
    /// The process to read RSS from, when known.
    pub pid: Option<u32>,
    child: Option<tokio::process::Child>,
    _data: Option<tempfile::TempDir>,
}

/// A free port on the loopback interface.
pub fn free_port() -> anyhow::Result<std::net::SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

impl Target {
    /// Starts `bin api` on a fresh temporary data dir and a free loopback port, with
    /// `extra_args` appended and `env` added to its environment, and waits until it
    /// answers `/readyz`.
    pub async fn start(
        bin: &Path,
        extra_args: &[String],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let data = tempfile::Builder::new()
            .prefix("warden-memtest-")
            .tempdir()?;
        let addr = free_port()?;
        let mut child = tokio::process::Command::new(bin)
            .arg("api")
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--data-dir")
            .arg(data.path())
            .args(extra_args)
            .env("WARDEN_LOG", "warn")
            .env_remove("WARDEN_DATABASE_URL")
            .env_remove("WARDEN_CONFIG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let base = format!("http://{addr}");
        let client = reqwest::Client::new();
        for _ in 0..600 {
            if let Ok(r) = client.get(format!("{base}/readyz")).send().await
                && r.status().is_success()
            {
                // From here on its log goes where ours goes; an unread pipe would
                // fill up and stall the server.
                if let Some(mut pipe) = child.stderr.take() {
                    tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut pipe, &mut tokio::io::stderr()).await;
                    });
                }
                return Ok(Self {
                    base,
                    pid: child.id(),
                    child: Some(child),
                    _data: Some(data),
                });
            }
            if let Some(status) = child.try_wait()? {
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    use tokio::io::AsyncReadExt as _;
                    let _ = pipe.read_to_string(&mut stderr).await;
                }
                anyhow::bail!(
                    "{} exited ({status}) before it was ready: {}",
                    bin.display(),
                    stderr.trim()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("{} did not answer {base}/readyz within 30 s", bin.display())
    }

    /// A service that is already running at `url` (RSS is read only if `pid` is given).
    pub async fn existing(url: &str, pid: Option<u32>) -> anyhow::Result<Self> {
        let base = url.trim_end_matches('/').to_owned();
        let parsed = reqwest::Url::parse(&base).with_context(|| format!("--url {url}"))?;
        let host = parsed.host_str().unwrap_or_default();
        let loopback = host == "localhost"
            || host
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        anyhow::ensure!(
            loopback,
            "--url must be a loopback address (127.0.0.1, [::1] or localhost): load is only ever sent to this machine"
        );
        if let Some(pid) = pid {
            anyhow::ensure!(
                rss_bytes(pid).is_some(),
                "--pid {pid}: no such process, or its /proc/{pid}/status cannot be read"
            );
        }
        let ready = reqwest::Client::new()
            .get(format!("{base}/readyz"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .with_context(|| format!("cannot reach {base}/readyz"))?;
        anyhow::ensure!(
            ready.status().is_success(),
            "{base}/readyz answered {}",
            ready.status()
        );
        Ok(Self {
            base,
            pid,
            child: None,
            _data: None,
        })
    }

    /// Stops a process started by [`Target::start`] (SIGKILL; its data dir is removed).
    pub async fn stop(mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill().await;
        }
    }
}

/// The binary to test when none is named: this executable.
pub fn this_executable() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("cannot find the path of this executable")
}

/// Resident set size of a process, from `/proc/PID/status` (Linux).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Heap figures read from the target's `/metrics` (`warden_heap_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapReading {
    /// Bytes in live allocations, including objects parked in thread caches.
    pub allocated: u64,
    /// Bytes parked in the allocator's thread caches (0 when not reported).
    pub thread_cached: u64,
}

impl HeapReading {
    /// Bytes the program holds: allocated minus what thread caches keep for reuse.
    pub fn in_use(&self) -> u64 {
        self.allocated.saturating_sub(self.thread_cached)
    }
}

/// Reads the heap figures from `/metrics`; `Ok(None)` when the target does not export
/// them (built without jemalloc, or not a Warden API).
pub async fn read_heap(
    client: &reqwest::Client,
    base: &str,
) -> anyhow::Result<Option<HeapReading>> {
    let text = client
        .get(format!("{base}/metrics"))
        .timeout(Duration::from_secs(5))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok(heap_from_metrics(&text))
}

/// Picks `warden_heap_bytes{kind="allocated"|"thread_cached"}` out of a Prometheus
/// text exposition.
pub fn heap_from_metrics(text: &str) -> Option<HeapReading> {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).ok()?;
    let value = |kind: &str| {
        scrape.samples.iter().find_map(|s| {
            let prometheus_parse::Value::Gauge(v) = s.value else {
                return None;
            };
            (s.metric == "warden_heap_bytes" && s.labels.get("kind") == Some(kind))
                .then_some(v as u64)
        })
    };
    Some(HeapReading {
        allocated: value("allocated")?,
        thread_cached: value("thread_cached").unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_is_read_from_the_exposition() {
        let text = "# HELP warden_heap_bytes Heap.\n# TYPE warden_heap_bytes gauge\n\
                    warden_heap_bytes{kind=\"active\"} 900\n\
                    warden_heap_bytes{kind=\"allocated\"} 800\n\
                    warden_heap_bytes{kind=\"thread_cached\"} 50\n";
        let heap = heap_from_metrics(text);
        assert_eq!(
            heap,
            Some(HeapReading {
                allocated: 800,
                thread_cached: 50
            })
        );
        assert_eq!(heap.map(|h| h.in_use()), Some(750));
        assert_eq!(heap_from_metrics("process_resident_memory_bytes 1\n"), None);
    }

    #[test]
    fn rss_of_this_process_is_readable() {
        let rss = rss_bytes(std::process::id());
        assert!(rss.is_some_and(|b| b > 1024 * 1024), "{rss:?}");
        assert_eq!(rss_bytes(u32::MAX), None);
    }
}
