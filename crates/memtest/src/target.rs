//! The service under test — Warden's API started from its binary (on a fresh data
//! dir and a free loopback port), any program started from a command line, or a
//! service already running — and how to read its memory: the RSS and PSS of its
//! whole process tree (pre-fork servers keep a leak in a worker), and a runtime heap
//! when its `/metrics` exports one under a well-known name.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;

/// A running service: started here (and stopped when dropped) or found at a URL.
pub struct Target {
    pub base: String,
    /// The root of the process tree to read memory from, when known.
    pub pid: Option<u32>,
    /// The path of its Prometheus metrics.
    pub metrics_path: String,
    child: Option<tokio::process::Child>,
    /// Started in a process group of its own, killed as a group.
    group: bool,
    _data: Option<tempfile::TempDir>,
}

/// How to start and reach a service that is not Warden's API (`--command`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServiceOptions {
    /// Working directory of the command [default: the current one].
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// Environment variable for the command, `KEY=VALUE`; repeat for several.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub env: Vec<(String, String)>,
    /// HTTP path that answers 2xx once the service is ready, e.g. `/healthz`
    /// [default: ready once its port accepts connections].
    #[arg(long, value_name = "PATH")]
    pub ready: Option<String>,
    /// Path of its Prometheus metrics, read for a runtime heap (Go, JVM, Node, .NET,
    /// Warden); without one, memory is the process tree's PSS.
    #[arg(long, value_name = "PATH", default_value = "/metrics")]
    pub metrics: String,
}

/// Parses `KEY=VALUE` (for `--env` and `--var`).
pub fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() && !key.contains(char::is_whitespace) => {
            Ok((key.to_owned(), value.to_owned()))
        }
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

/// Splits a command line as a POSIX shell would (quotes, escapes), without running
/// a shell, and puts `port` where it says `{port}`.
pub fn command_line(command: &str, port: u16) -> anyhow::Result<Vec<String>> {
    let words = shlex::split(command).with_context(|| {
        format!("cannot split the command {command:?}: an unclosed quote or a trailing backslash")
    })?;
    anyhow::ensure!(!words.is_empty(), "the command is empty");
    Ok(words
        .into_iter()
        .map(|w| w.replace("{port}", &port.to_string()))
        .collect())
}

/// The last lines a started command wrote to stderr, kept to explain its exit.
type Tail = std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<String>>>;

fn keep_tail(stderr: Option<tokio::process::ChildStderr>) -> Tail {
    let tail: Tail = Tail::default();
    if let Some(stderr) = stderr {
        let kept = std::sync::Arc::clone(&tail);
        tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt as _;
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut tail = kept
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if tail.len() == 20 {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });
    }
    tail
}

fn tail_text(tail: &Tail) -> String {
    let tail = tail
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if tail.is_empty() {
        "(it wrote nothing to stderr)".to_owned()
    } else {
        tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }
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
                    metrics_path: "/metrics".to_owned(),
                    child: Some(child),
                    group: false,
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

    /// Starts `command` (see [`command_line`]) on a free loopback port, which is also
    /// in its environment as `PORT`, in a process group of its own, and waits until
    /// it is ready: `--ready PATH` answers 2xx, or else its port accepts connections.
    pub async fn command(command: &str, options: &ServiceOptions) -> anyhow::Result<Self> {
        let addr = free_port()?;
        let argv = command_line(command, addr.port())?;
        let mut process = tokio::process::Command::new(&argv[0]);
        process
            .args(&argv[1..])
            .env("PORT", addr.port().to_string())
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(dir) = &options.cwd {
            process.current_dir(dir);
        }
        let mut child = process.spawn().with_context(|| {
            format!(
                "cannot start {:?}{}: is it installed, and is the path right?",
                argv[0],
                options
                    .cwd
                    .as_ref()
                    .map(|d| format!(" in {}", d.display()))
                    .unwrap_or_default()
            )
        })?;
        let tail = keep_tail(child.stderr.take());
        let base = format!("http://{addr}");
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut target = Self {
            base,
            pid: child.id(),
            metrics_path: options.metrics.clone(),
            child: None,
            group: true,
            _data: None,
        };
        loop {
            let ready = match &options.ready {
                Some(path) => client
                    .get(format!("{}{}", target.base, path))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success()),
                None => tokio::net::TcpStream::connect(addr).await.is_ok(),
            };
            if ready {
                target.child = Some(child);
                return Ok(target);
            }
            if let Some(status) = child.try_wait()? {
                tokio::time::sleep(Duration::from_millis(100)).await;
                anyhow::bail!(
                    "{command:?} exited ({status}) before it was ready; its last words:\n{}",
                    tail_text(&tail)
                );
            }
            if tokio::time::Instant::now() > deadline {
                target.child = Some(child);
                target.stop().await;
                let waited_for = options.ready.as_ref().map_or_else(
                    || format!("accept connections on port {}", addr.port()),
                    |path| format!("answer 2xx at {path}"),
                );
                anyhow::bail!(
                    "{command:?} did not {waited_for} within 60 s: does it listen on the port                      given as {{port}} or $PORT? Its last words:\n{}",
                    tail_text(&tail)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
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
            metrics_path: "/metrics".to_owned(),
            child: None,
            group: false,
            _data: None,
        })
    }

    /// Stops a process started here: a command's whole process group gets SIGTERM,
    /// then SIGKILL after 3 s; Warden's API gets SIGKILL (its data dir is removed).
    pub async fn stop(mut self) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        if self.group
            && let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok())
        {
            let group = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGTERM);
            if tokio::time::timeout(Duration::from_secs(3), child.wait())
                .await
                .is_err()
            {
                let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            }
            // Workers that outlived their parent are in the same group.
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        }
        let _ = child.kill().await;
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

/// The memory of a process and all its descendants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeMemory {
    /// Sum of RSS: counts pages shared by a pre-fork server's workers once per
    /// worker, so it overstates.
    pub rss: u64,
    /// Sum of PSS (`/proc/PID/smaps_rollup`): each shared page split between its
    /// sharers, so the sum is what the tree really holds; `None` when a process's
    /// smaps_rollup cannot be read (not ours, or an old kernel).
    pub pss: Option<u64>,
    /// How many processes (1 + descendants).
    pub processes: usize,
}

impl TreeMemory {
    /// The figure leaks are judged on without a heap metric: PSS if readable.
    pub fn judged(&self) -> u64 {
        self.pss.unwrap_or(self.rss)
    }
}

/// Memory of `pid` and every process descended from it (Linux `/proc`), or `None`
/// when `pid` is gone.
pub fn tree_memory(pid: u32) -> Option<TreeMemory> {
    let root = i32::try_from(pid).ok()?;
    let mut children: std::collections::HashMap<i32, Vec<i32>> = std::collections::HashMap::new();
    if let Ok(all) = procfs::process::all_processes() {
        for process in all.flatten() {
            if let Ok(stat) = process.stat() {
                children.entry(stat.ppid).or_default().push(stat.pid);
            }
        }
    }
    let mut total = TreeMemory {
        rss: 0,
        pss: Some(0),
        processes: 0,
    };
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        let Some(rss) = u32::try_from(pid).ok().and_then(rss_bytes) else {
            // Gone since the listing (a worker recycled): the root must be there.
            if pid == root {
                return None;
            }
            continue;
        };
        total.rss += rss;
        total.processes += 1;
        let pss = procfs::process::Process::new(pid)
            .and_then(|p| p.smaps_rollup())
            .ok()
            .and_then(|r| {
                r.memory_map_rollup
                    .0
                    .first()?
                    .extension
                    .map
                    .get("Pss")
                    .copied()
            });
        total.pss = total.pss.zip(pss).map(|(a, b)| a + b);
        stack.extend(children.get(&pid).into_iter().flatten());
    }
    Some(total)
}

/// Heap figures read from the target's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapReading {
    /// Bytes in live allocations, including objects parked in thread caches.
    pub allocated: u64,
    /// Bytes parked in the allocator's thread caches (0 when not reported).
    pub thread_cached: u64,
    /// Which metric it came from.
    pub source: HeapMetric,
}

impl HeapReading {
    /// Bytes the program holds: allocated minus what thread caches keep for reuse.
    pub fn in_use(&self) -> u64 {
        self.allocated.saturating_sub(self.thread_cached)
    }
}

/// A runtime's heap metric under its well-known name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapMetric {
    /// The runtime, as the report names it.
    pub runtime: &'static str,
    /// The metric's name.
    pub name: &'static str,
    /// A label the series must carry, e.g. the JVM's `area="heap"`.
    pub label: Option<(&'static str, &'static str)>,
}

/// The heap metrics recognised, in order of preference. Several series of one
/// metric (a JVM's heap pools, a Node cluster's workers) are summed.
pub const HEAP_METRICS: &[HeapMetric] = &[
    HeapMetric {
        runtime: "Warden (jemalloc)",
        name: "warden_heap_bytes",
        label: Some(("kind", "allocated")),
    },
    HeapMetric {
        runtime: "Go",
        name: "go_memstats_heap_alloc_bytes",
        label: None,
    },
    HeapMetric {
        runtime: "JVM",
        name: "jvm_memory_used_bytes",
        label: Some(("area", "heap")),
    },
    HeapMetric {
        runtime: "Node.js",
        name: "nodejs_heap_size_used_bytes",
        label: None,
    },
    HeapMetric {
        runtime: ".NET",
        name: "dotnet_total_memory_bytes",
        label: None,
    },
];

/// Reads the heap figures from `base` + `path`; `Ok(None)` when the target exports
/// none of [`HEAP_METRICS`] (or no metrics at all: a 404 is not an error).
pub async fn read_heap(
    client: &reqwest::Client,
    base: &str,
    path: &str,
) -> anyhow::Result<Option<HeapReading>> {
    let response = client
        .get(format!("{base}{path}"))
        .timeout(Duration::from_secs(5))
        .send()
        .await?;
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    let text = response.error_for_status()?.text().await?;
    Ok(heap_from_metrics(&text))
}

/// Picks the first of [`HEAP_METRICS`] present in a Prometheus text exposition
/// (with Warden's `warden_heap_bytes{kind="thread_cached"}` beside its allocated).
pub fn heap_from_metrics(text: &str) -> Option<HeapReading> {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).ok()?;
    let sum = |name: &str, label: Option<(&str, &str)>| {
        let values: Vec<f64> = scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .filter_map(|s| match s.value {
                prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => Some(v),
                _ => None,
            })
            .filter(|v| v.is_finite() && *v >= 0.0)
            .collect();
        (!values.is_empty()).then(|| values.iter().sum::<f64>() as u64)
    };
    HEAP_METRICS.iter().find_map(|metric| {
        Some(HeapReading {
            allocated: sum(metric.name, metric.label)?,
            thread_cached: if metric.name == "warden_heap_bytes" {
                sum(metric.name, Some(("kind", "thread_cached"))).unwrap_or(0)
            } else {
                0
            },
            source: *metric,
        })
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
                thread_cached: 50,
                source: HEAP_METRICS[0],
            })
        );
        assert_eq!(heap.map(|h| h.in_use()), Some(750));
        assert_eq!(heap_from_metrics("process_resident_memory_bytes 1\n"), None);
    }

    #[test]
    fn well_known_runtime_heaps_are_read_and_summed() {
        let read = |text: &str| heap_from_metrics(text).map(|h| (h.source.runtime, h.in_use()));
        assert_eq!(
            read(
                "# TYPE go_memstats_heap_alloc_bytes gauge\ngo_memstats_heap_alloc_bytes 4.5e+06\n"
            ),
            Some(("Go", 4_500_000))
        );
        assert_eq!(
            read(
                "# TYPE jvm_memory_used_bytes gauge\n\
                 jvm_memory_used_bytes{area=\"heap\",id=\"G1 Eden Space\"} 1000\n\
                 jvm_memory_used_bytes{area=\"heap\",id=\"G1 Old Gen\"} 2000\n\
                 jvm_memory_used_bytes{area=\"nonheap\",id=\"Metaspace\"} 9999\n"
            ),
            Some(("JVM", 3000)),
            "heap pools summed, non-heap left out"
        );
        assert_eq!(
            read(
                "# TYPE nodejs_heap_size_used_bytes gauge\n\
                 nodejs_heap_size_used_bytes 7000000\n"
            ),
            Some(("Node.js", 7_000_000))
        );
        assert_eq!(
            read("# TYPE dotnet_total_memory_bytes gauge\ndotnet_total_memory_bytes 123\n"),
            Some((".NET", 123))
        );
        assert_eq!(
            read("# TYPE jvm_memory_used_bytes gauge\njvm_memory_used_bytes{area=\"nonheap\"} 5\n"),
            None
        );
        assert_eq!(read("not a metric line at all {{{\n"), None);
    }

    #[test]
    fn the_memory_of_a_process_tree_includes_its_children() {
        // A shell with two children that each hold 40 MiB they wrote (private, dirty).
        let mut parent = std::process::Command::new("sh")
            .arg("-c")
            .arg(
                "python3 -c 'import time; b = bytearray(40 << 20); time.sleep(30)' & \
                 python3 -c 'import time; b = bytearray(40 << 20); time.sleep(30)' & wait",
            )
            .spawn()
            .unwrap();
        let pid = parent.id();
        let mut seen = None;
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(100));
            seen = tree_memory(pid);
            if seen.is_some_and(|m| m.processes == 3 && m.judged() > 80 << 20) {
                break;
            }
        }
        let _ = std::process::Command::new("pkill")
            .args(["-P", &pid.to_string()])
            .status();
        let _ = parent.kill();
        let _ = parent.wait();
        let seen = seen.unwrap();
        assert_eq!(seen.processes, 3, "{seen:?}");
        assert!(seen.rss > 80 << 20, "{seen:?}");
        let pss = seen.pss.unwrap();
        assert!(pss > 80 << 20 && pss <= seen.rss, "{seen:?}");
        assert_eq!(tree_memory(u32::MAX), None);
    }

    #[test]
    fn commands_are_split_like_a_shell_and_get_the_port() {
        assert_eq!(
            command_line(
                "gunicorn -b '127.0.0.1:{port}' --env \"A=b c\" app:app",
                8123
            )
            .unwrap(),
            [
                "gunicorn",
                "-b",
                "127.0.0.1:8123",
                "--env",
                "A=b c",
                "app:app"
            ]
        );
        assert!(command_line("node 'server.js", 1).is_err());
        assert!(command_line("  ", 1).is_err());
        assert_eq!(parse_key_value("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert!(parse_key_value("=x").is_err());
        assert!(parse_key_value("novalue").is_err());
    }

    #[test]
    fn rss_of_this_process_is_readable() {
        let rss = rss_bytes(std::process::id());
        assert!(rss.is_some_and(|b| b > 1024 * 1024), "{rss:?}");
        assert_eq!(rss_bytes(u32::MAX), None);
    }
}
