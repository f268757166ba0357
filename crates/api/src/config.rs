//! Settings of the API service: flags, then `WARDEN_*` environment variables, then an
//! optional TOML file, then defaults.
//!
//! [`ApiArgs`] is both the clap argument group (`warden api --help` documents every
//! setting) and the TOML file's schema, so the two cannot drift apart. Every field is
//! optional there; [`Settings::resolve`] layers them and checks every value, naming
//! the setting when one is wrong.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::forwarded::{PROXY_SECRET_ENV, ProxySecret};

/// Settings as given on the command line, in the environment or in the config file.
#[derive(Debug, Clone, Default, clap::Args, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ApiArgs {
    /// Address to serve the API on. [default: 127.0.0.1:8080]
    #[arg(long, env = "WARDEN_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Directory for the SQLite database (created if missing). [default: ./warden-data]
    #[arg(long, env = "WARDEN_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Database URL. `postgres://user@host/db` for PostgreSQL, `sqlite://FILE` for a
    /// specific SQLite file. [default: SQLite file `api.sqlite3` in the data dir]
    #[arg(
        long,
        env = "WARDEN_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,

    /// TOML file with any of these settings, keys spelled as the flags without `--`
    /// (`listen = "127.0.0.1:9000"`). Flags and environment variables win over it.
    #[arg(long, env = "WARDEN_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Largest database connection pool. [default: 16]
    #[arg(long, env = "WARDEN_DB_MAX_CONNECTIONS", value_name = "N")]
    pub db_max_connections: Option<u32>,

    /// Lifetime of a session token, e.g. `24h`, `30m`. [default: 24h]
    #[arg(long, env = "WARDEN_TOKEN_TTL", value_name = "DURATION", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub token_ttl: Option<Duration>,

    /// How long a validated session is remembered before the database is asked
    /// again. Logging out takes effect at once on this instance; other instances may
    /// accept a revoked token this long. `0s` disables the cache. [default: 5s]
    #[arg(long, env = "WARDEN_SESSION_CACHE_TTL", value_name = "DURATION", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub session_cache_ttl: Option<Duration>,

    /// Largest accepted request body in bytes; larger bodies get 413. [default: 262144]
    #[arg(long, env = "WARDEN_BODY_LIMIT_BYTES", value_name = "BYTES")]
    pub body_limit_bytes: Option<usize>,

    /// Deepest accepted JSON nesting of arrays and objects; deeper gets 400. [default: 64]
    #[arg(long, env = "WARDEN_JSON_MAX_DEPTH", value_name = "N")]
    pub json_max_depth: Option<usize>,

    /// Longest a request may take before it is answered 503. [default: 10s]
    #[arg(long, env = "WARDEN_REQUEST_TIMEOUT", value_name = "DURATION", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub request_timeout: Option<Duration>,

    /// Requests served at once; beyond it requests are shed with 503 and Retry-After
    /// instead of queueing without bound. [default: 512]
    #[arg(long, env = "WARDEN_MAX_CONCURRENT_REQUESTS", value_name = "N")]
    pub max_concurrent_requests: Option<usize>,

    /// Password hashes computed at once (each takes 19 MiB). [default: number of CPUs]
    #[arg(long, env = "WARDEN_PASSWORD_HASH_CONCURRENCY", value_name = "N")]
    pub password_hash_concurrency: Option<usize>,

    /// Failed logins for one account from one client address within the throttle
    /// window before that address gets 429 for that account. Only that pair is
    /// refused: the account's owner logs in from any other address, so knowing an
    /// email is not enough to lock its owner out (OWASP: throttle, do not lock
    /// accounts). [default: 5]
    #[arg(long, env = "WARDEN_LOGIN_FAILURES_PER_ACCOUNT", value_name = "N")]
    pub login_failures_per_account: Option<u32>,

    /// Failed logins from one client address, for any accounts, within the throttle
    /// window before that address gets 429 for every login. The client address is the
    /// TCP peer; behind a reverse proxy, it is the last X-Forwarded-For address, but
    /// only on requests whose X-Warden-Proxy-Secret header matches the secret in the
    /// WARDEN_PROXY_SECRET environment variable (at least 32 characters; set by
    /// `warden up` for its instances; deliberately not a flag, since command lines are
    /// world-readable). [default: 20]
    #[arg(long, env = "WARDEN_LOGIN_FAILURES_PER_ADDRESS", value_name = "N")]
    pub login_failures_per_address: Option<u32>,

    /// Failed logins for one account from all addresses together within the throttle
    /// window after which it counts as under attack: an address that has failed on it
    /// even once in its window must then wait for that window to end, which slows a
    /// guesser with many addresses to one guess per address, while addresses that
    /// have not failed on it still log in at once. [default: 50]
    #[arg(
        long,
        env = "WARDEN_LOGIN_FAILURES_PER_ACCOUNT_ALL_ADDRESSES",
        value_name = "N"
    )]
    pub login_failures_per_account_all_addresses: Option<u32>,

    /// Window over which failed logins are counted. [default: 15m]
    #[arg(long, env = "WARDEN_LOGIN_THROTTLE_WINDOW", value_name = "DURATION", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub login_throttle_window: Option<Duration>,

    /// How long a client has to send a complete request head: from connecting for
    /// the first request, from the first byte for each later one on a keep-alive
    /// connection. A slower connection is closed. [default: 10s]
    #[arg(long, env = "WARDEN_HEADER_READ_TIMEOUT", value_name = "DURATION", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub header_read_timeout: Option<Duration>,

    /// How long a keep-alive connection may wait for its next request before it is
    /// closed. A proxy or client pool in front must drop unused connections sooner.
    /// [default: 60s]
    #[arg(long, env = "WARDEN_IDLE_TIMEOUT", value_name = "DURATION", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub idle_timeout: Option<Duration>,

    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish. [default: 30s]
    #[arg(long, env = "WARDEN_SHUTDOWN_TIMEOUT", value_name = "DURATION", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub shutdown_timeout: Option<Duration>,

    /// How often to log RSS and heap. [default: 60s]
    #[arg(long, env = "WARDEN_MEMORY_LOG_INTERVAL", value_name = "DURATION", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub memory_log_interval: Option<Duration>,

    /// FAULT INJECTION: leak this many bytes on every /v1 request (all JSON),
    /// reproducing the outage's faulty JSON library on purpose, for memory tests and
    /// drills. Shown in /metrics as warden_chaos_leak_bytes_per_request. Never in
    /// production. [default: 0, off]
    #[arg(
        long,
        env = "WARDEN_CHAOS_LEAK_BYTES_PER_REQUEST",
        value_name = "BYTES"
    )]
    pub chaos_leak_bytes_per_request: Option<usize>,
}

/// A setting with a bad value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid value for `{setting}`: {reason}")]
    Invalid {
        setting: &'static str,
        reason: String,
    },
}

/// Fully resolved, checked settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub database_url: String,
    pub db_max_connections: u32,
    pub token_ttl: Duration,
    pub session_cache_ttl: Duration,
    pub body_limit_bytes: usize,
    pub json_max_depth: usize,
    pub request_timeout: Duration,
    pub max_concurrent_requests: usize,
    pub password_hash_concurrency: usize,
    pub login_failures_per_account: u32,
    pub login_failures_per_address: u32,
    pub login_failures_per_account_all_addresses: u32,
    pub login_throttle_window: Duration,
    /// The secret that makes X-Forwarded-For believable (from [`PROXY_SECRET_ENV`]).
    pub proxy_secret: Option<ProxySecret>,
    /// Deadlines for clients that are slow to send a request head, or idle.
    pub connection_timeouts: warden_telemetry::serve::Timeouts,
    pub shutdown_timeout: Duration,
    pub memory_log_interval: Duration,
    pub chaos_leak_bytes_per_request: usize,
}

/// The data directory used when none is given.
pub const DEFAULT_DATA_DIR: &str = "./warden-data";

impl Settings {
    /// Layers flags/environment (`args`) over the config file (if any) over defaults,
    /// and checks every value.
    pub fn resolve(args: ApiArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => ApiArgs::default(),
        };
        let pick = Merge { args, file };
        let data_dir = pick
            .get(|a| a.data_dir.clone())
            .unwrap_or_else(|| DEFAULT_DATA_DIR.into());
        let database_url = match pick.get(|a| a.database_url.clone()) {
            Some(url) => url,
            None => sqlite_url(&data_dir.join("api.sqlite3")),
        };
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "database-url",
                "expected a URL starting with postgres://, postgresql:// or sqlite:",
            ));
        }
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let settings = Self {
            listen: pick
                .get(|a| a.listen)
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080))),
            database_url,
            db_max_connections: positive(
                "db-max-connections",
                pick.get(|a| a.db_max_connections),
                16,
            )?,
            token_ttl: nonzero(
                "token-ttl",
                pick.get(|a| a.token_ttl),
                Duration::from_secs(24 * 3600),
            )?,
            session_cache_ttl: pick
                .get(|a| a.session_cache_ttl)
                .unwrap_or(Duration::from_secs(5)),
            body_limit_bytes: positive(
                "body-limit-bytes",
                pick.get(|a| a.body_limit_bytes),
                256 * 1024,
            )?,
            json_max_depth: positive("json-max-depth", pick.get(|a| a.json_max_depth), 64)?,
            request_timeout: nonzero(
                "request-timeout",
                pick.get(|a| a.request_timeout),
                Duration::from_secs(10),
            )?,
            max_concurrent_requests: positive(
                "max-concurrent-requests",
                pick.get(|a| a.max_concurrent_requests),
                512,
            )?,
            password_hash_concurrency: positive(
                "password-hash-concurrency",
                pick.get(|a| a.password_hash_concurrency),
                cpus,
            )?,
            login_failures_per_account: positive(
                "login-failures-per-account",
                pick.get(|a| a.login_failures_per_account),
                5,
            )?,
            login_failures_per_address: positive(
                "login-failures-per-address",
                pick.get(|a| a.login_failures_per_address),
                20,
            )?,
            login_failures_per_account_all_addresses: positive(
                "login-failures-per-account-all-addresses",
                pick.get(|a| a.login_failures_per_account_all_addresses),
                50,
            )?,
            login_throttle_window: nonzero(
                "login-throttle-window",
                pick.get(|a| a.login_throttle_window),
                Duration::from_secs(15 * 60),
            )?,
            connection_timeouts: warden_telemetry::serve::Timeouts {
                header_read: nonzero(
                    "header-read-timeout",
                    pick.get(|a| a.header_read_timeout),
                    warden_telemetry::serve::Timeouts::DEFAULT_HEADER_READ,
                )?,
                idle: nonzero(
                    "idle-timeout",
                    pick.get(|a| a.idle_timeout),
                    warden_telemetry::serve::Timeouts::DEFAULT_IDLE,
                )?,
            },
            shutdown_timeout: pick
                .get(|a| a.shutdown_timeout)
                .unwrap_or(Duration::from_secs(30)),
            memory_log_interval: nonzero(
                "memory-log-interval",
                pick.get(|a| a.memory_log_interval),
                Duration::from_secs(60),
            )?,
            chaos_leak_bytes_per_request: pick.get(|a| a.chaos_leak_bytes_per_request).unwrap_or(0),
            proxy_secret: proxy_secret_from_env()?,
        };
        if settings.json_max_depth > 128 {
            return Err(invalid("json-max-depth", "must be at most 128"));
        }
        Ok(settings)
    }

    /// Creates the data directory, owner-only, when the database is the default
    /// SQLite file in it; an existing one open to others is tightened.
    pub fn prepare_data_dir(args: &ApiArgs) -> std::io::Result<()> {
        if args.database_url.is_none() {
            let dir = args
                .data_dir
                .clone()
                .unwrap_or_else(|| DEFAULT_DATA_DIR.into());
            crate::private::prepare_dir(&dir)?;
        }
        Ok(())
    }
}

/// The proxy secret from [`PROXY_SECRET_ENV`], if set. Only the environment is read:
/// a flag would put the secret on the command line, readable by every local user.
fn proxy_secret_from_env() -> Result<Option<ProxySecret>, ConfigError> {
    proxy_secret(std::env::var(PROXY_SECRET_ENV))
}

fn proxy_secret(
    value: Result<String, std::env::VarError>,
) -> Result<Option<ProxySecret>, ConfigError> {
    match value {
        Ok(value) => ProxySecret::parse(&value)
            .map(Some)
            .map_err(|reason| ConfigError::Invalid {
                setting: PROXY_SECRET_ENV,
                reason,
            }),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(invalid(
            PROXY_SECRET_ENV,
            "must be visible ASCII characters only",
        )),
    }
}

/// The `sqlite://` URL of a file, created if missing.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

struct Merge {
    args: ApiArgs,
    file: ApiArgs,
}

impl Merge {
    fn get<T>(&self, field: impl Fn(&ApiArgs) -> Option<T>) -> Option<T> {
        field(&self.args).or_else(|| field(&self.file))
    }
}

fn read_file(path: &Path) -> Result<ApiArgs, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

fn invalid(setting: &'static str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        setting,
        reason: reason.to_owned(),
    }
}

fn positive<T: PartialEq + Default>(
    setting: &'static str,
    value: Option<T>,
    default: T,
) -> Result<T, ConfigError> {
    match value {
        Some(v) if v == T::default() => Err(invalid(setting, "must be greater than zero")),
        Some(v) => Ok(v),
        None => Ok(default),
    }
}

fn nonzero(
    setting: &'static str,
    value: Option<Duration>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    positive(setting, value, default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_configuration() {
        let s = Settings::resolve(ApiArgs::default()).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert!(
            s.database_url
                .starts_with("sqlite://./warden-data/api.sqlite3")
        );
        assert_eq!(s.body_limit_bytes, 262_144);
        assert_eq!(s.json_max_depth, 64);
        assert_eq!(s.token_ttl, Duration::from_secs(86_400));
        assert_eq!(s.connection_timeouts.header_read, Duration::from_secs(10));
        assert_eq!(s.connection_timeouts.idle, Duration::from_secs(60));
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\njson-max-depth = 10\ntoken-ttl = \"1h\"\n\
             idle-timeout = \"90s\"\n",
        )
        .unwrap();
        let args = ApiArgs {
            config: Some(path),
            json_max_depth: Some(20),
            ..ApiArgs::default()
        };
        let s = Settings::resolve(args).unwrap();
        assert_eq!(s.listen.port(), 9000);
        assert_eq!(s.json_max_depth, 20);
        assert_eq!(s.token_ttl, Duration::from_secs(3600));
        assert_eq!(s.connection_timeouts.idle, Duration::from_secs(90));
    }

    #[test]
    fn a_bad_value_names_the_setting() {
        let args = ApiArgs {
            json_max_depth: Some(0),
            ..ApiArgs::default()
        };
        let err = Settings::resolve(args).unwrap_err().to_string();
        assert!(err.contains("json-max-depth"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.toml");
        std::fs::write(&path, "lisen = \"x\"\n").unwrap();
        let err = Settings::resolve(ApiArgs {
            config: Some(path),
            ..ApiArgs::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("lisen"), "{err}");

        let err = Settings::resolve(ApiArgs {
            idle_timeout: Some(Duration::ZERO),
            ..ApiArgs::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("idle-timeout"), "{err}");

        let err = Settings::resolve(ApiArgs {
            database_url: Some("mysql://x".into()),
            ..ApiArgs::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("database-url"), "{err}");

        let err = proxy_secret(Ok("too short".into()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("WARDEN_PROXY_SECRET") && err.contains("32"),
            "{err}"
        );
        assert!(!err.contains("too short"), "the value is not echoed: {err}");
        assert!(proxy_secret(Err(std::env::VarError::NotPresent)).is_ok_and(|s| s.is_none()));
        assert!(proxy_secret(Ok("x".repeat(32))).is_ok_and(|s| s.is_some()));
    }
}
