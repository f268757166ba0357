//! nginx as the peer of the side-by-side benchmarks (`warden bench proxy`,
//! `warden bench status`), and the process plumbing those benchmarks share.
//!
//! [`find_nginx`] finds Debian's binary (which is not on an ordinary user's PATH);
//! [`Nginx::start`] runs it in the foreground (`-g 'daemon off;'`) from a scratch
//! prefix with a generated config: [`config`] holds what every benchmark wants (as
//! many worker processes as asked for, no access log, keep-alive request limits
//! raised so no connection is closed during a run, temporary paths inside the
//! prefix) around the `http { ... }` content the benchmark brings (an upstream and
//! a `server`, or a `server` with a `root`). Dropping it stops nginx.
//!
//! [`raise_open_files_limit`] lifts the soft `RLIMIT_NOFILE` to the hard limit:
//! a thousand keep-alive connections through both ends of loopback need a few
//! thousand descriptors, and nginx inherits the raised limit.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::target::free_port;

/// The nginx binary: the one given, else `nginx` on PATH, else the sbin directories
/// (Debian puts it in /usr/sbin, which is not on an ordinary user's PATH).
///
/// # Errors
/// The given file does not exist, or no nginx is installed (the message says how
/// to install it).
pub fn find_nginx(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        anyhow::ensure!(path.is_file(), "--nginx {}: no such file", path.display());
        return Ok(path.to_owned());
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("nginx"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(
            [
                "/usr/sbin/nginx",
                "/usr/local/sbin/nginx",
                "/usr/local/nginx/sbin/nginx",
            ]
            .map(PathBuf::from),
        )
        .find(|p| p.is_file())
        .context(
            "nginx is not installed: install Debian's nginx package (apt-get install nginx; \
             scripts/test does it when run as root) or name the binary with --nginx PATH",
        )
}

/// `nginx -v`: "nginx/1.22.1".
///
/// # Errors
/// The binary cannot be run.
pub fn nginx_version(bin: &Path) -> anyhow::Result<String> {
    let output = Command::new(bin)
        .arg("-v")
        .output()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    // nginx prints its version on stderr.
    let text = String::from_utf8_lossy(&output.stderr);
    Ok(text
        .trim()
        .strip_prefix("nginx version: ")
        .unwrap_or(text.trim())
        .to_owned())
}

/// The whole config: `workers` worker processes of `worker_connections` each, pid
/// file and error log in `prefix`, no access log, temporary paths in `prefix`,
/// keep-alive request limits raised, and `site` (upstreams, servers) inside
/// `http { ... }`.
#[must_use]
pub fn config(prefix: &str, workers: usize, worker_connections: usize, site: &str) -> String {
    let site = site.trim_end();
    format!(
        r#"worker_processes {workers};
pid "{prefix}/nginx.pid";
error_log "{prefix}/error.log" warn;
events {{
    worker_connections {worker_connections};
}}
http {{
    access_log off;
    client_body_temp_path "{prefix}/client_body";
    proxy_temp_path "{prefix}/proxy";
    fastcgi_temp_path "{prefix}/fastcgi";
    uwsgi_temp_path "{prefix}/uwsgi";
    scgi_temp_path "{prefix}/scgi";
    keepalive_requests 1000000;
{site}
}}
"#
    )
}

/// Whether `path` can stand in a double-quoted nginx config string as it is.
#[must_use]
pub fn safe_in_config(path: &str) -> bool {
    !path.contains(['"', ';', '{', '}', '$', '\\'])
}

/// nginx in the foreground, stopped (SIGTERM, then SIGKILL) when dropped. Its
/// prefix, config, pid file and logs live in a temporary directory.
pub struct Nginx {
    /// Where it listens (127.0.0.1, a free port).
    pub addr: SocketAddr,
    child: Child,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts `bin` listening on a free loopback port with [`config`] around what
    /// `site(listen address)` returns. It may not answer yet: see
    /// [`Nginx::wait_until_answering`].
    ///
    /// # Errors
    /// The prefix cannot be made or nginx cannot be spawned.
    pub fn start(
        bin: &Path,
        workers: usize,
        worker_connections: usize,
        site: impl FnOnce(SocketAddr) -> String,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("warden-bench-nginx-")
            .tempdir()?;
        // Run as root, nginx's workers switch to an unprivileged user, which must be
        // able to enter the prefix.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        }
        let addr = free_port()?;
        let prefix = dir.path().display().to_string();
        anyhow::ensure!(
            safe_in_config(&prefix),
            "the temporary directory {prefix} has characters nginx's config cannot hold"
        );
        let conf = dir.path().join("nginx.conf");
        std::fs::write(
            &conf,
            config(&prefix, workers, worker_connections, &site(addr)),
        )?;
        let stderr = std::fs::File::create(dir.path().join("stderr.log"))?;
        let child = Command::new(bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        Ok(Self { addr, child, dir })
    }

    /// Waits until `url` answers anything (nginx is up), or says why nginx is not.
    ///
    /// # Errors
    /// No answer within 15 s; the error holds the end of nginx's logs.
    pub async fn wait_until_answering(
        &self,
        client: &reqwest::Client,
        url: &str,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if client.get(url).send().await.is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                anyhow::bail!("nginx did not answer within 15 s: {}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last 600 characters of its stderr and error log.
    #[must_use]
    pub fn log_tail(&self) -> String {
        let mut text = String::new();
        for file in ["stderr.log", "error.log"] {
            if let Ok(log) = std::fs::read_to_string(self.dir.path().join(file)) {
                text.push_str(log.trim());
                text.push(' ');
            }
        }
        let text = text.trim();
        let start = text.len().saturating_sub(600);
        let start = (start..=text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(text.len());
        text[start..].to_owned()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(5));
    }
}

/// SIGTERM, up to `grace` to exit, then SIGKILL.
pub fn stop_child(child: &mut Child, grace: Duration) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Raises this process's soft limit of open files to its hard limit (children
/// such as nginx inherit it) and returns the soft limit now in force.
///
/// # Errors
/// The limit cannot be read or set, or it stays below `needed`; the message says
/// how to raise it.
pub fn raise_open_files_limit(needed: u64) -> anyhow::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) =
        getrlimit(Resource::RLIMIT_NOFILE).context("cannot read the open-files limit")?;
    let soft = if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).with_context(|| {
            format!("cannot raise the open-files limit from {soft} to the hard limit {hard}")
        })?;
        hard
    } else {
        soft
    };
    anyhow::ensure!(
        soft >= needed,
        "the open-files limit is {soft} (hard limit {hard}) and this benchmark needs about \
         {needed}: raise the hard limit (ulimit -Hn, or LimitNOFILE= in a systemd unit) or \
         use fewer connections"
    );
    Ok(soft)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_config_wraps_the_site_in_the_common_settings() {
        let text = config("/tmp/x", 2, 4096, "    server { listen 127.0.0.1:1000; }\n");
        assert!(text.contains("worker_processes 2;"));
        assert!(text.contains("worker_connections 4096;"));
        assert!(text.contains("access_log off;"));
        assert!(text.contains("keepalive_requests 1000000;"));
        assert!(text.contains("pid \"/tmp/x/nginx.pid\";"));
        assert!(text.contains("    server { listen 127.0.0.1:1000; }\n}\n"));
    }

    #[test]
    fn unsafe_paths_are_refused() {
        assert!(safe_in_config("/tmp/warden-bench-nginx-abc"));
        assert!(!safe_in_config("/tmp/a\"b"));
        assert!(!safe_in_config("/tmp/a;b"));
    }

    #[test]
    fn the_open_files_limit_is_at_least_what_is_asked_for() {
        let soft = raise_open_files_limit(16).unwrap();
        assert!(soft >= 16);
    }
}
