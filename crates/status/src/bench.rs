//! `warden bench status`: the status page under a herd of readers, next to nginx
//! serving the same page exported as a static file.
//!
//! **The page.** A scratch control-plane store (SQLite in a temporary directory,
//! as `warden up` keeps it) is filled through this crate's own functions, so every
//! row and event is what the real commands write: the default components with 91
//! days of history; six resolved incidents over the last 80 days, each with
//! identified / monitoring / resolved updates (one with a postmortem); two open
//! incidents (a partial outage of authentication with three updates, degraded
//! data retrieval with three); and two announced maintenances. That is the page
//! users open during an incident, when they all open it at once.
//!
//! **The two servers.** Warden's side is the console's status routes exactly as
//! `warden up` builds them ([`crate::start`]: the router, the maintenance clock and
//! the incident automation), served as it serves them (`warden_telemetry::serve`,
//! HTTP/1.1 with its connection deadlines) on a Tokio runtime of its own
//! with `--workers` threads (default: one per CPU), in this process. nginx's side
//! is the same page written by [`crate::export`] into a temporary directory and
//! served by Debian's nginx as a static file (`--workers` worker processes, as
//! `worker_processes auto` gives one per CPU; `sendfile` and `tcp_nopush` as in
//! Debian's config; no access log; keep-alive request limit raised; the same
//! `Cache-Control`, `Content-Security-Policy` and other headers the console sends).
//!
//! **The load.** The in-repo load generator (`warden_memtest::load`, as `warden
//! bench proxy` uses it): `--concurrency` (default 1000) keep-alive connections
//! from this process, one HTTP client per server. Each reader asks for
//! the HTML page without a cached ETag — `GET /status` from Warden, `GET /` (the
//! exported `index.html`) from nginx — and a request counts only if it got a `200`
//! with a whole page (its size within 256 bytes of the page's, `<!doctype html>`
//! to `</html>`); anything else is an error. After a warm-up that opens every
//! connection, `--rounds` rounds each measure both servers for `--duration`,
//! alternating which goes first, so noise on the shared machine falls on both,
//! in two ways:
//!
//! - **closed loop**: every reader asks again as soon as it has the page, so the
//!   servers run flat out — this is the throughput;
//! - **paced**: the same connections, but `--rate` requests per second in all
//!   (default 1,000: every one of the 1,000 readers reloading once a second), with
//!   latency counted from when each request was due, so a stall is not hidden.
//!
//! The two are needed because in a closed loop latency is not a property of the
//! server: by Little's law the mean latency is the number of connections divided
//! by the throughput (1,000 connections at 10,000 requests/s wait 100 ms on
//! average, for nginx too), so p99 at 1,000 connections means something only at
//! a rate the server keeps up with. Figures are medians over rounds.
//! `--conditional` adds, in each round, closed-loop readers that send the ETag they
//! hold (`If-None-Match`, answered `304`), reported apart.
//!
//! **Goals.** Warden's median closed-loop throughput at least
//! [`THROUGHPUT_RATIO_GOAL`] × nginx's; its median paced p99 under [`P99_GOAL_MS`]
//! ms (with `--rate 0`, no paced phase, the closed-loop p99 is held to it instead);
//! and no error on either side. Exit 0 when met, 1 when not, 2 when the environment
//! is not fit (no nginx, too few file descriptors).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, ETAG, HeaderValue, IF_NONE_MATCH};
use serde::Serialize;
use warden_memtest::load::{self, Answer, LoadPlan, LoadReport, Side, summarise};
use warden_memtest::nginx::{Nginx, find_nginx, nginx_version, safe_in_config};
use warden_store::Store;

use crate::incidents::{self, OpenIncident, UpdateIncident};
use crate::maintenance::{self, ScheduleMaintenance};
use crate::{ComponentStatus, Impact, IncidentStatus, StatusConfig};

/// Warden's throughput at least this share of nginx's.
pub const THROUGHPUT_RATIO_GOAL: f64 = 0.5;
/// Warden's p99 latency under this many milliseconds.
pub const P99_GOAL_MS: f64 = 50.0;

/// How far a response's size may be from the page's and still be the page (the
/// uptime figures may change while the benchmark runs).
const PAGE_SIZE_SLACK: usize = 256;

/// Options of `warden bench status`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchStatusArgs {
    /// Length of each measurement.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Interleaved rounds; figures are medians over rounds.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Concurrent keep-alive connections of the load generator (readers).
    #[arg(long, default_value_t = 1000)]
    pub concurrency: usize,
    /// nginx worker processes, and threads of the status page's runtime
    /// [default: the number of CPUs, as nginx's `worker_processes auto`].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// The nginx binary [default: `nginx` on PATH, else /usr/sbin/nginx].
    #[arg(long, value_name = "PATH")]
    pub nginx: Option<PathBuf>,
    /// Requests per second, in all, of the paced phase (latency at a rate both
    /// keep up with); 0 skips it.
    #[arg(long, default_value_t = 1000.0, value_name = "PER_SECOND")]
    pub rate: f64,
    /// Also measure readers that hold the page's ETag (`If-None-Match` → 304),
    /// reported apart.
    #[arg(long)]
    pub conditional: bool,
    /// Print one JSON document on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The paced phase: the same connections at a fixed total rate.
#[derive(Debug, Clone, Serialize)]
pub struct PacedReport {
    /// Requests per second, in all.
    pub rate: f64,
    pub nginx: Side,
    pub warden: Side,
}

/// The readers that send the ETag they hold.
#[derive(Debug, Clone, Serialize)]
pub struct ConditionalReport {
    pub nginx: Side,
    pub warden: Side,
    /// Share of nginx's answers that were 304 (the rest were whole pages).
    pub nginx_not_modified_share: f64,
    /// Share of Warden's answers that were 304.
    pub warden_not_modified_share: f64,
    /// Warden's median throughput / nginx's.
    pub throughput_ratio: f64,
}

/// The report of `warden bench status`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusBenchReport {
    pub request: String,
    /// Size of the page Warden serves.
    pub warden_page_bytes: usize,
    /// Size of the exported page nginx serves (its links are relative).
    pub nginx_page_bytes: usize,
    pub concurrency: usize,
    pub duration_s: f64,
    pub rounds: usize,
    pub workers: usize,
    pub nginx_version: String,
    /// Closed loop.
    pub nginx: Side,
    /// Closed loop.
    pub warden: Side,
    /// Warden's median closed-loop throughput / nginx's.
    pub throughput_ratio: f64,
    /// Warden's median closed-loop p99 / nginx's (for information).
    pub p99_ratio: f64,
    /// At `--rate` (absent with `--rate 0`).
    pub paced: Option<PacedReport>,
    /// The p99 the goal is held to: Warden's paced median p99 (closed-loop without
    /// a paced phase).
    pub p99_ms: f64,
    /// With `--conditional`.
    pub conditional: Option<ConditionalReport>,
    pub throughput_ratio_goal: f64,
    pub p99_goal_ms: f64,
    /// Throughput ratio and `p99_ms` within their goals, and no error on either side.
    pub passed: bool,
}

/// Runs `warden bench status`; true when the goals are met.
///
/// # Errors
/// Bad options, no nginx, too few file descriptors, or a server that does not
/// serve the page at all.
pub async fn run_status_bench(args: BenchStatusArgs) -> anyhow::Result<bool> {
    anyhow::ensure!(
        (1..=100_000).contains(&args.concurrency),
        "--concurrency must be between 1 and 100000"
    );
    anyhow::ensure!(
        (1..=1000).contains(&args.rounds),
        "--rounds must be between 1 and 1000"
    );
    anyhow::ensure!(!args.duration.is_zero(), "--duration must be more than 0 s");
    anyhow::ensure!(
        args.rate.is_finite() && (0.0..=10_000_000.0).contains(&args.rate),
        "--rate must be between 0 (no paced phase) and 10000000 requests per second"
    );
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    anyhow::ensure!(
        (1..=256).contains(&workers),
        "--workers must be between 1 and 256"
    );
    let nginx_bin = find_nginx(args.nginx.as_deref())?;
    let nginx_version = nginx_version(&nginx_bin)?;
    // Both clients' connections, the console's ends of them, the store, nginx's.
    let wanted = u64::try_from(args.concurrency)
        .unwrap_or(u64::MAX)
        .saturating_mul(3)
        .saturating_add(256);
    warden_memtest::nginx::raise_open_files_limit(wanted)?;

    let scratch = tempfile::Builder::new()
        .prefix("warden-bench-status-")
        .tempdir()?;
    let store = Store::open(&scratch.path().join("control.db"))
        .context("cannot create the scratch store")?;
    let config = StatusConfig::default();
    let now = warden_store::now_ms();
    let open = tokio::task::spawn_blocking({
        let (store, config) = (store.clone(), config.clone());
        move || populate(&store, &config, now)
    })
    .await
    .context("filling the scratch store")??;
    eprintln!(
        "scratch status page: {} open incidents, history and maintenances in {}",
        open.len(),
        scratch.path().display()
    );

    // nginx's workers run as an unprivileged user when nginx starts as root: the
    // export must be readable by it.
    let export_dir = tempfile::Builder::new()
        .prefix("warden-bench-status-export-")
        .tempdir()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(export_dir.path(), std::fs::Permissions::from_mode(0o755))?;
    }
    let root = export_dir.path().display().to_string();
    anyhow::ensure!(
        safe_in_config(&root),
        "the temporary directory {root} has characters nginx's config cannot hold"
    );
    crate::export::export(
        &store,
        &config,
        export_dir.path(),
        warden_store::now_ms(),
        None,
    )
    .context("cannot export the page")?;

    let warden = InProcessConsole::start(store, config, workers)?;
    eprintln!(
        "Warden's console on {} ({workers} runtime threads)",
        warden.addr
    );
    let worker_connections = args.concurrency.saturating_add(1024).max(4096);
    let nginx = Nginx::start(&nginx_bin, workers, worker_connections, |listen| {
        static_site(listen, &root, args.concurrency)
    })?;
    eprintln!(
        "{nginx_version} on {} ({workers} workers), serving {root}",
        nginx.addr
    );

    let targets = [
        ("nginx", format!("http://{}/", nginx.addr)),
        ("warden", format!("http://{}/status", warden.addr)),
    ];
    // One client per server, so neither reuses the other's connections.
    let clients = targets
        .iter()
        .map(|_| {
            reqwest::Client::builder()
                .pool_max_idle_per_host(args.concurrency)
                .timeout(Duration::from_secs(30))
                .build()
        })
        .collect::<Result<Vec<_>, _>>()?;
    nginx
        .wait_until_answering(&clients[0], &targets[0].1)
        .await?;

    // Each side must serve the whole page, with the open incidents on it.
    let mut pages = Vec::new();
    for ((name, url), client) in targets.iter().zip(&clients) {
        let page = fetch_page(client, name, url, &open).await?;
        eprintln!("{name}: {} bytes, ETag {}", page.bytes, page.etag);
        pages.push(page);
    }

    let plan = LoadPlan {
        concurrency: args.concurrency,
        duration: args.duration,
        max_requests: u64::MAX,
        rate: None,
    };
    // Enough requests that every connection is opened and used a few times.
    let warm_up = LoadPlan {
        max_requests: u64::try_from(args.concurrency.saturating_mul(20)).unwrap_or(u64::MAX),
        duration: args.duration.max(Duration::from_secs(10)),
        ..plan
    };
    for (t, (name, url)) in targets.iter().enumerate() {
        eprintln!("warming up: {name}");
        let reader = Reader::full(url, pages[t].bytes);
        measure(&clients[t], warm_up, &reader).await?;
    }

    let mut full: Vec<Vec<LoadReport>> = vec![Vec::new(); targets.len()];
    let mut conditional: Vec<Vec<LoadReport>> = vec![Vec::new(); targets.len()];
    let mut paced: Vec<Vec<LoadReport>> = vec![Vec::new(); targets.len()];
    let paced_plan = LoadPlan {
        rate: Some(args.rate),
        ..plan
    };
    let mut not_modified = [0u64; 2];
    for round in 1..=args.rounds {
        let order: [usize; 2] = if round % 2 == 1 { [0, 1] } else { [1, 0] };
        for t in order {
            let (name, url) = &targets[t];
            let reader = Reader::full(url, pages[t].bytes);
            let report = measure(&clients[t], plan, &reader).await?;
            eprintln!("{}", report.round_line(round, args.rounds, name));
            full[t].push(report);
        }
        if args.rate > 0.0 {
            for t in order {
                let (name, url) = &targets[t];
                let reader = Reader::full(url, pages[t].bytes);
                let report = measure(&clients[t], paced_plan, &reader).await?;
                eprintln!("{} (paced)", report.round_line(round, args.rounds, name));
                paced[t].push(report);
            }
        }
        if args.conditional {
            for t in order {
                let (name, url) = &targets[t];
                let reader = Reader::conditional(url, pages[t].bytes, &pages[t].etag)?;
                let report = measure(&clients[t], plan, &reader).await?;
                not_modified[t] += reader.not_modified.load(Ordering::Relaxed);
                eprintln!(
                    "{} (If-None-Match)",
                    report.round_line(round, args.rounds, name)
                );
                conditional[t].push(report);
            }
        }
    }
    drop(nginx);
    drop(warden);

    let (nginx, warden) = (
        summarise(targets[0].0, &full[0]),
        summarise(targets[1].0, &full[1]),
    );
    let throughput_ratio = warden.requests_per_s / nginx.requests_per_s.max(f64::EPSILON);
    let p99_ratio = warden.p99_ms / nginx.p99_ms.max(f64::EPSILON);
    let conditional = args.conditional.then(|| {
        let (nginx, warden) = (
            summarise(targets[0].0, &conditional[0]),
            summarise(targets[1].0, &conditional[1]),
        );
        let share = |n: u64, side: &Side| n as f64 / side.requests.max(1) as f64;
        ConditionalReport {
            nginx_not_modified_share: share(not_modified[0], &nginx),
            warden_not_modified_share: share(not_modified[1], &warden),
            throughput_ratio: warden.requests_per_s / nginx.requests_per_s.max(f64::EPSILON),
            nginx,
            warden,
        }
    });
    let paced = (args.rate > 0.0).then(|| PacedReport {
        rate: args.rate,
        nginx: summarise(targets[0].0, &paced[0]),
        warden: summarise(targets[1].0, &paced[1]),
    });
    let p99_ms = paced.as_ref().map_or(warden.p99_ms, |p| p.warden.p99_ms);
    let errors = nginx.errors
        + warden.errors
        + paced
            .as_ref()
            .map_or(0, |p| p.nginx.errors + p.warden.errors)
        + conditional
            .as_ref()
            .map_or(0, |c| c.nginx.errors + c.warden.errors);
    let passed = throughput_ratio >= THROUGHPUT_RATIO_GOAL && p99_ms < P99_GOAL_MS && errors == 0;
    let report = StatusBenchReport {
        request: "GET /status (Warden) and GET / (nginx, the exported index.html), \
                  without If-None-Match: whole pages"
            .to_owned(),
        warden_page_bytes: pages[1].bytes,
        nginx_page_bytes: pages[0].bytes,
        concurrency: args.concurrency,
        duration_s: args.duration.as_secs_f64(),
        rounds: args.rounds,
        workers,
        nginx_version,
        nginx,
        warden,
        throughput_ratio,
        p99_ratio,
        paced,
        p99_ms,
        conditional,
        throughput_ratio_goal: THROUGHPUT_RATIO_GOAL,
        p99_goal_ms: P99_GOAL_MS,
        passed,
    };
    if args.json {
        warden_telemetry::outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        print_table(&report)?;
    }
    Ok(passed)
}

fn print_table(r: &StatusBenchReport) -> anyhow::Result<()> {
    warden_telemetry::outln!(
        "warden bench status: the status page (HTML, no cached ETag), {} connections, {} s per \
         measurement, median of {} rounds, {} workers each; page {} bytes from Warden, {} \
         bytes from nginx",
        r.concurrency,
        r.duration_s,
        r.rounds,
        r.workers,
        r.warden_page_bytes,
        r.nginx_page_bytes
    )?;
    warden_telemetry::outln!(
        "{:<44} {:>10} {:>8} {:>8} {:>8}",
        "server",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors"
    )?;
    let nginx_label = format!("{} (static file)", r.nginx_version);
    let mut rows = vec![
        (format!("{nginx_label}, closed loop"), &r.nginx),
        ("warden console, closed loop".to_owned(), &r.warden),
    ];
    if let Some(p) = &r.paced {
        rows.push((format!("{nginx_label}, {} req/s", p.rate), &p.nginx));
        rows.push((format!("warden console, {} req/s", p.rate), &p.warden));
    }
    if let Some(c) = &r.conditional {
        rows.push((format!("{nginx_label}, If-None-Match"), &c.nginx));
        rows.push(("warden console, If-None-Match".to_owned(), &c.warden));
    }
    let mut errors = 0;
    for (label, side) in rows {
        errors += side.errors;
        warden_telemetry::outln!(
            "{label:<44} {:>10.0} {:>8.2} {:>8.2} {:>8}",
            side.requests_per_s,
            side.p50_ms,
            side.p99_ms,
            side.errors
        )?;
    }
    let mark = |ok: bool| if ok { "met" } else { "NOT met" };
    warden_telemetry::outln!(
        "throughput warden/nginx (closed loop): {:.3} (goal ≥ {}: {}; p99 ratio {:.2})",
        r.throughput_ratio,
        r.throughput_ratio_goal,
        mark(r.throughput_ratio >= r.throughput_ratio_goal),
        r.p99_ratio
    )?;
    warden_telemetry::outln!(
        "p99 warden ({}): {:.2} ms (goal < {} ms: {})",
        r.paced
            .as_ref()
            .map_or_else(|| "closed loop".to_owned(), |p| format!("{} req/s", p.rate)),
        r.p99_ms,
        r.p99_goal_ms,
        mark(r.p99_ms < r.p99_goal_ms)
    )?;
    if let Some(c) = &r.conditional {
        warden_telemetry::outln!(
            "If-None-Match: throughput warden/nginx {:.3}; 304 answers: warden {:.1} %, nginx {:.1} %",
            c.throughput_ratio,
            c.warden_not_modified_share * 100.0,
            c.nginx_not_modified_share * 100.0
        )?;
    }
    if errors > 0 {
        warden_telemetry::outln!("{errors} requests did not get the page (goal: none)")?;
    }
    Ok(())
}

/// What one server answered to a first, checked request.
struct Page {
    bytes: usize,
    etag: String,
}

/// GETs the page once and checks it is the whole page with every open incident on
/// it.
async fn fetch_page(
    client: &reqwest::Client,
    name: &str,
    url: &str,
    open: &[String],
) -> anyhow::Result<Page> {
    let response = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("{name}: GET {url}"))?;
    let status = response.status();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let etag = response
        .headers()
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response
        .bytes()
        .await
        .with_context(|| format!("{name}: reading GET {url}"))?;
    anyhow::ensure!(
        status == StatusCode::OK,
        "{name} answered GET {url} with {status}"
    );
    anyhow::ensure!(
        content_type.starts_with("text/html"),
        "{name} answered GET {url} with {content_type:?}, not HTML"
    );
    anyhow::ensure!(
        is_page(&body, body.len()),
        "{name} answered GET {url} with something that is not a whole page ({} bytes)",
        body.len()
    );
    let text = String::from_utf8_lossy(&body);
    for incident in open {
        anyhow::ensure!(
            text.contains(incident.as_str()),
            "{name}'s page does not show the open incident {incident:?}"
        );
    }
    anyhow::ensure!(!etag.is_empty(), "{name} sent no ETag with the page");
    Ok(Page {
        bytes: body.len(),
        etag,
    })
}

/// Whether `body` is a whole HTML page of about `expected` bytes.
fn is_page(body: &[u8], expected: usize) -> bool {
    body.len().abs_diff(expected) <= PAGE_SIZE_SLACK
        && body
            .get(..15)
            .is_some_and(|head| head.eq_ignore_ascii_case(b"<!doctype html>"))
        && body.trim_ascii_end().ends_with(b"</html>")
}

/// One kind of reader: its URL, the page size to expect, and, for a reader that
/// revalidates, the ETag it holds.
struct Reader {
    url: String,
    page_bytes: usize,
    /// Like a browser's cache, shared by all readers: the ETag of the last whole
    /// page received (the page changes as its uptime figures move).
    etag: Option<Arc<RwLock<HeaderValue>>>,
    not_modified: Arc<AtomicU64>,
}

impl Reader {
    fn full(url: &str, page_bytes: usize) -> Self {
        Self {
            url: url.to_owned(),
            page_bytes,
            etag: None,
            not_modified: Arc::default(),
        }
    }

    fn conditional(url: &str, page_bytes: usize, etag: &str) -> anyhow::Result<Self> {
        let etag = HeaderValue::from_str(etag).context("the page's ETag")?;
        Ok(Self {
            etag: Some(Arc::new(RwLock::new(etag))),
            ..Self::full(url, page_bytes)
        })
    }
}

/// One run of `reader`'s request. A whole page (200) is a good answer; for a
/// reader holding an ETag, so is a 304 (counted), and a 200 gives it the new ETag.
async fn measure(
    client: &reqwest::Client,
    plan: LoadPlan,
    reader: &Reader,
) -> anyhow::Result<LoadReport> {
    let client = client.clone();
    let (url, etag, expected) = (reader.url.clone(), reader.etag.clone(), reader.page_bytes);
    let not_modified = Arc::clone(&reader.not_modified);
    load::run(plan, move |_| {
        let mut request = client.get(&url);
        if let Some(etag) = &etag {
            let held = etag.read().unwrap_or_else(PoisonError::into_inner).clone();
            request = request.header(IF_NONE_MATCH, held);
        }
        let request = request.send();
        let (etag, not_modified) = (etag.clone(), Arc::clone(&not_modified));
        async move {
            let ok = match request.await {
                Ok(response) => {
                    let status = response.status();
                    let new_tag = response.headers().get(ETAG).cloned();
                    match response.bytes().await {
                        Ok(body) if status == StatusCode::OK => {
                            if let (Some(etag), Some(new_tag)) = (&etag, new_tag) {
                                *etag.write().unwrap_or_else(PoisonError::into_inner) = new_tag;
                            }
                            is_page(&body, expected)
                        }
                        Ok(body) if status == StatusCode::NOT_MODIFIED && body.is_empty() => {
                            not_modified.fetch_add(1, Ordering::Relaxed);
                            true
                        }
                        _ => false,
                    }
                }
                Err(_) => false,
            };
            Answer::from(ok)
        }
    })
    .await
}

/// The static site: `root` as the document root, `index.html` for `/`, HTML and
/// JSON with their media types (UTF-8), and the headers Warden's console sends with
/// the page. `sendfile` and `tcp_nopush` as Debian's nginx.conf has them.
fn static_site(listen: SocketAddr, root: &str, concurrency: usize) -> String {
    let backlog = concurrency.max(511);
    format!(
        r#"    sendfile on;
    tcp_nopush on;
    types {{
        text/html html;
        application/json json;
        application/atom+xml atom;
        application/rss+xml rss;
    }}
    default_type application/octet-stream;
    charset utf-8;
    server {{
        listen {listen} backlog={backlog};
        root "{root}";
        index index.html;
        add_header Cache-Control "public, max-age=5";
        add_header X-Content-Type-Options "nosniff";
        add_header Referrer-Policy "no-referrer";
        add_header Content-Security-Policy "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
    }}
"#
    )
}

/// The console's status routes as `warden up` builds and serves them (with the
/// default connection deadlines), on a runtime of its own (like a process of its
/// own); stopped when dropped.
struct InProcessConsole {
    addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl InProcessConsole {
    fn start(store: Store, config: StatusConfig, workers: usize) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("status-console")
            .enable_all()
            .build()
            .context("cannot start the console's runtime")?;
        let (addr, listener, router) = {
            let _inside = runtime.enter();
            // As tokio::net::TcpListener::bind does it (`warden up`): backlog 1024.
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.set_reuseaddr(true)?;
            socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
            let listener = socket.listen(1024)?;
            let addr = listener.local_addr()?;
            // The token guards the admin routes, which the benchmark does not use.
            let token = format!("{}{}", crate::new_id(), crate::new_id());
            let wiring = crate::Wiring {
                admin_token: token,
                base_url: format!("http://{addr}"),
                on_call: None,
            };
            (addr, listener, crate::start(store, config, wiring)?)
        };
        runtime.spawn(warden_telemetry::serve::serve(
            listener,
            router,
            warden_telemetry::serve::Timeouts::default(),
            std::future::pending(),
        ));
        Ok(Self {
            addr,
            runtime: Some(runtime),
        })
    }
}

impl Drop for InProcessConsole {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

/// Fills `store` with a realistic page as of `now`; returns the titles of the open
/// incidents.
fn populate(store: &Store, config: &StatusConfig, now: i64) -> anyhow::Result<Vec<String>> {
    let fail = |what: &str| {
        let what = what.to_owned();
        move |e: crate::StatusError| anyhow::anyhow!("scratch page: {what}: {e}")
    };
    crate::components::sync(store, config, now - 91 * DAY).map_err(fail("components"))?;

    // Resolved history: (days ago, minutes to resolve, title, components, cause).
    type Past<'a> = (i64, i64, &'a str, &'a [(&'a str, ComponentStatus)], &'a str);
    let history: [Past<'_>; 6] = [
        (
            78,
            34,
            "Sign-in failures for some users",
            &[("authentication", ComponentStatus::PartialOutage)],
            "An expired certificate on one of the session servers.",
        ),
        (
            61,
            105,
            "Elevated errors and slow responses on the API",
            &[
                ("api", ComponentStatus::MajorOutage),
                ("authentication", ComponentStatus::PartialOutage),
                ("data-retrieval", ComponentStatus::PartialOutage),
            ],
            "A memory leak in a recently updated JSON library; the update was rolled back.",
        ),
        (
            44,
            22,
            "Slow item listings",
            &[("data-retrieval", ComponentStatus::DegradedPerformance)],
            "A missing database index after a schema change.",
        ),
        (
            29,
            48,
            "Intermittent timeouts",
            &[("api", ComponentStatus::PartialOutage)],
            "A misconfigured load balancer health check.",
        ),
        (
            13,
            15,
            "Delayed sign-up emails",
            &[("authentication", ComponentStatus::DegradedPerformance)],
            "A queue consumer that stopped after a deploy.",
        ),
        (
            4,
            61,
            "Errors when reading items",
            &[("data-retrieval", ComponentStatus::MajorOutage)],
            "A database failover that took longer than expected.",
        ),
    ];
    for (n, (days, minutes, name, components, cause)) in history.iter().enumerate() {
        let start = now - days * DAY;
        let end = start + minutes * 60_000;
        let opened = incidents::open(
            store,
            config,
            &OpenIncident {
                name: (*name).to_owned(),
                body: Some(format!(
                    "We are investigating reports of {}. More soon.",
                    name.to_lowercase()
                )),
                components: components
                    .iter()
                    .map(|(id, status)| ((*id).to_owned(), *status))
                    .collect(),
                ..OpenIncident::default()
            },
            start,
        )
        .map_err(fail("open a past incident"))?;
        for (at, status, body) in [
            (
                start + (end - start) / 3,
                IncidentStatus::Identified,
                format!("We found the cause: {cause} A fix is being rolled out."),
            ),
            (
                start + 2 * (end - start) / 3,
                IncidentStatus::Monitoring,
                "The fix is in place and error rates are back to normal. We are watching \
                 closely."
                    .to_owned(),
            ),
        ] {
            incidents::update(
                store,
                config,
                &opened.id,
                &UpdateIncident {
                    status: Some(status),
                    body: Some(body),
                    ..UpdateIncident::default()
                },
                at,
            )
            .map_err(fail("update a past incident"))?;
        }
        incidents::resolve(store, config, &opened.id, &UpdateIncident::default(), end)
            .map_err(fail("resolve a past incident"))?;
        if n == 1 {
            incidents::update(
                store,
                config,
                &opened.id,
                &UpdateIncident {
                    status: Some(IncidentStatus::Postmortem),
                    body: Some(
                        "Postmortem: a memory leak in an updated JSON library exhausted the \
                         API's memory. Memory tests now gate every dependency update, memory \
                         alerts fire on abnormal growth, and rollback takes under a second."
                            .to_owned(),
                    ),
                    ..UpdateIncident::default()
                },
                end + 3 * DAY,
            )
            .map_err(fail("post a postmortem"))?;
        }
    }

    // Announced two days ago.
    for (days_ahead, hours, name, components) in [
        (2, 2, "Database upgrade", vec!["data-retrieval".to_owned()]),
        (
            9,
            1,
            "Sign-in service maintenance",
            vec!["authentication".to_owned()],
        ),
    ] {
        let start = now + days_ahead * DAY;
        maintenance::schedule(
            store,
            config,
            &ScheduleMaintenance {
                name: name.to_owned(),
                scheduled_for: crate::json_time(start),
                scheduled_until: crate::json_time(start + hours * HOUR),
                components,
                body: None,
            },
            now - 2 * DAY,
        )
        .map_err(fail("schedule a maintenance"))?;
    }

    // Open now: a partial outage of sign-in, and slow listings.
    let sign_in = "Elevated error rates on sign-in";
    let opened = incidents::open(
        store,
        config,
        &OpenIncident {
            name: sign_in.to_owned(),
            impact: Some(Impact::Major),
            body: Some("Some sign-in requests fail with errors. We are investigating.".to_owned()),
            components: [
                ("authentication".to_owned(), ComponentStatus::PartialOutage),
                ("api".to_owned(), ComponentStatus::DegradedPerformance),
            ]
            .into(),
            ..OpenIncident::default()
        },
        now - 50 * 60_000,
    )
    .map_err(fail("open an incident"))?;
    for (minutes_ago, status, body) in [
        (
            30,
            IncidentStatus::Identified,
            "The session store is overloaded after a configuration change; we are reverting \
             it.",
        ),
        (
            10,
            IncidentStatus::Monitoring,
            "The change is reverted and sign-ins succeed again. We are monitoring.",
        ),
    ] {
        incidents::update(
            store,
            config,
            &opened.id,
            &UpdateIncident {
                status: Some(status),
                body: Some(body.to_owned()),
                ..UpdateIncident::default()
            },
            now - minutes_ago * 60_000,
        )
        .map_err(fail("update an incident"))?;
    }
    let listings = "Slow responses when listing items";
    let opened = incidents::open(
        store,
        config,
        &OpenIncident {
            name: listings.to_owned(),
            components: [(
                "data-retrieval".to_owned(),
                ComponentStatus::DegradedPerformance,
            )]
            .into(),
            ..OpenIncident::default()
        },
        now - 20 * 60_000,
    )
    .map_err(fail("open an incident"))?;
    for (minutes_ago, status, body) in [
        (
            15,
            IncidentStatus::Investigating,
            "Listing items takes several seconds for some accounts. Reading single items is \
             not affected.",
        ),
        (
            5,
            IncidentStatus::Identified,
            "A slow database query is the cause; a fix is being deployed.",
        ),
    ] {
        incidents::update(
            store,
            config,
            &opened.id,
            &UpdateIncident {
                status: Some(status),
                body: Some(body.to_owned()),
                ..UpdateIncident::default()
            },
            now - minutes_ago * 60_000,
        )
        .map_err(fail("update an incident"))?;
    }

    Ok(vec![sign_in.to_owned(), listings.to_owned()])
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::statuspage::Snapshot;

    #[test]
    fn the_scratch_page_has_open_incidents_history_and_maintenance() {
        let store = Store::in_memory().unwrap();
        let config = StatusConfig::default();
        let now = warden_store::now_ms();
        let open = populate(&store, &config, now).unwrap();
        assert_eq!(open.len(), 2);
        let snapshot = Snapshot::read(&store, now).unwrap();
        assert_eq!(snapshot.unresolved_incidents().count(), 2);
        assert_eq!(snapshot.incidents.len(), 8);
        assert!(snapshot.incidents.iter().all(|i| i.updates.len() >= 3));
        assert_eq!(snapshot.upcoming_maintenances().len(), 2);
        let page = crate::page::render_status(
            &snapshot,
            &config,
            &crate::statuspage::Links {
                base: String::new(),
                static_files: true,
            },
        )
        .unwrap();
        assert!(is_page(page.as_bytes(), page.len()));
        assert!(open.iter().all(|name| page.contains(name.as_str())));
        assert!(page.contains("Database upgrade"));
    }

    #[test]
    fn only_a_whole_page_counts() {
        let page = b"<!DOCTYPE html>\n<html><body>hi</body></html>\n";
        assert!(is_page(page, page.len()));
        assert!(is_page(page, page.len() + 100));
        assert!(!is_page(page, page.len() + 1000));
        assert!(!is_page(&page[..30], page.len()));
        assert!(!is_page(b"{\"status\":503}", 14));
    }

    #[test]
    fn the_static_site_serves_the_export_with_the_console_headers() {
        let site = static_site(
            SocketAddr::from(([127, 0, 0, 1], 1000)),
            "/tmp/export",
            1000,
        );
        assert!(site.contains("listen 127.0.0.1:1000 backlog=1000;"));
        assert!(site.contains("root \"/tmp/export\";"));
        assert!(site.contains("index index.html;"));
        assert!(site.contains("Cache-Control \"public, max-age=5\""));
        let config = warden_memtest::nginx::config("/tmp/x", 2, 4096, &site);
        assert!(config.contains("access_log off;"));
    }
}
