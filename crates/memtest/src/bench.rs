//! `warden bench api`: the API's throughput and latency next to the framework's
//! ceiling, measured in one run on one machine.
//!
//! The ceiling is a bare axum server started by the benchmark (on its own runtime
//! thread, as the API runs in its own process) that answers every request with the
//! exact bytes of a real item response: what the API could reach if auth, the
//! database and telemetry cost nothing. Each API build under test (`--bin`, repeat to
//! compare builds, e.g. jemalloc against the system allocator) runs as a child
//! process on a fresh SQLite data dir. Targets are measured in interleaved rounds so
//! machine noise falls on all of them; the report gives medians over rounds.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use axum::http::{StatusCode, header};
use serde::Serialize;

use crate::load::{self, LoadPlan, LoadReport};
use crate::target::Target;

/// Options of `warden bench api`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchApiArgs {
    /// API binary to measure; repeat to compare builds side by side (the first one
    /// is the reference for ratios). [default: this executable]
    #[arg(long = "bin", value_name = "PATH")]
    pub bins: Vec<PathBuf>,
    /// Length of each measurement.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Interleaved rounds; figures are medians over rounds.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Print one JSON document on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Medians of one target over all rounds.
#[derive(Debug, Clone, Serialize)]
pub struct TargetResult {
    pub name: String,
    pub get_item: Summary,
    pub post_item: Summary,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
    pub requests: u64,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub concurrency: usize,
    pub duration_s: f64,
    pub rounds: usize,
    pub response_bytes: usize,
    pub ceiling: TargetResult,
    pub builds: Vec<TargetResult>,
}

/// The item the benchmarks create and read: JSON with nesting and non-ASCII text.
pub const ITEM_BODY: &str = r#"{"title":"benchmark item","data":{"kind":"order","qty":3,"tags":["a","b","c"],"note":"naïve café — ünïcödé","nested":{"ok":true,"ratio":0.25}}}"#;

struct ApiUnderTest {
    name: String,
    base: String,
    token: String,
    item_id: i64,
    target: Target,
}

/// Registers `email`, logs in and creates one item ([`ITEM_BODY`]); returns the
/// session token and the item's id, for benchmarks that read it back.
pub async fn sign_up_with_item(
    client: &reqwest::Client,
    base: &str,
    email: &str,
) -> anyhow::Result<(String, i64)> {
    let credentials = serde_json::json!({"email": email, "password": "benchmark password 1"});
    let created = client
        .post(format!("{base}/v1/users"))
        .json(&credentials)
        .send()
        .await?;
    anyhow::ensure!(
        created.status() == StatusCode::CREATED,
        "registering failed: {}",
        created.status()
    );
    let session: serde_json::Value = client
        .post(format!("{base}/v1/sessions"))
        .json(&credentials)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = session["token"]
        .as_str()
        .context("no token in the login answer")?
        .to_owned();
    let item: serde_json::Value = client
        .post(format!("{base}/v1/items"))
        .bearer_auth(&token)
        .header(header::CONTENT_TYPE, "application/json")
        .body(ITEM_BODY)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let item_id = item["id"].as_i64().context("no id in the created item")?;
    Ok((token, item_id))
}

async fn start_api(
    bin: &Path,
    client: &reqwest::Client,
    index: usize,
) -> anyhow::Result<ApiUnderTest> {
    let target = Target::start(bin, &[], &[]).await?;
    let base = target.base.clone();
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let allocator = if metrics.contains("warden_heap_bytes") {
        "jemalloc"
    } else {
        "system allocator"
    };
    let (token, item_id) =
        sign_up_with_item(client, &base, &format!("bench{index}@example.com")).await?;
    Ok(ApiUnderTest {
        name: format!("{} ({allocator})", bin.display()),
        base,
        token,
        item_id,
        target,
    })
}

/// Serves `body` for every GET and POST on a runtime of its own, like a separate
/// process with two worker threads (what the API child gets on this machine).
fn start_ceiling(body: axum::body::Bytes) -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
        .enable_all()
        .build()?;
    std::thread::spawn(move || {
        runtime.block_on(async move {
            let get_body = body.clone();
            let app = axum::Router::new()
                .route(
                    "/v1/items/{id}",
                    axum::routing::get(move || {
                        let b = get_body.clone();
                        async move { ([(header::CONTENT_TYPE, "application/json")], b) }
                    }),
                )
                .route(
                    "/v1/items",
                    axum::routing::post(move |_: axum::body::Bytes| {
                        let b = body.clone();
                        async move {
                            (
                                StatusCode::CREATED,
                                [(header::CONTENT_TYPE, "application/json")],
                                b,
                            )
                        }
                    }),
                );
            if let Ok(listener) = tokio::net::TcpListener::from_std(listener) {
                let _ = axum::serve(listener, app).await;
            }
        });
    });
    Ok(addr)
}

async fn measure(
    client: &reqwest::Client,
    plan: LoadPlan,
    base: &str,
    token: &str,
    item_id: i64,
) -> anyhow::Result<(LoadReport, LoadReport)> {
    let (c, url, auth) = (
        client.clone(),
        format!("{base}/v1/items/{item_id}"),
        format!("Bearer {token}"),
    );
    let get = load::run(plan, move |_| {
        let request = c.get(&url).header(header::AUTHORIZATION, &auth).send();
        async move { answered(request, StatusCode::OK).await }
    })
    .await?;
    let (c, url, auth) = (
        client.clone(),
        format!("{base}/v1/items"),
        format!("Bearer {token}"),
    );
    let post = load::run(plan, move |_| {
        let request = c
            .post(&url)
            .header(header::AUTHORIZATION, &auth)
            .header(header::CONTENT_TYPE, "application/json")
            .body(ITEM_BODY)
            .send();
        async move { answered(request, StatusCode::CREATED).await }
    })
    .await?;
    Ok((get, post))
}

/// Whether a request got `status` and its whole body.
async fn answered(
    request: impl std::future::Future<Output = reqwest::Result<reqwest::Response>>,
    status: StatusCode,
) -> bool {
    match request.await {
        Ok(r) => {
            let got = r.status();
            r.bytes().await.is_ok() && got == status
        }
        Err(_) => false,
    }
}

fn summarise(runs: &[LoadReport]) -> Summary {
    let median = |of: fn(&LoadReport) -> f64| {
        crate::stats::median(&mut runs.iter().map(of).collect::<Vec<_>>())
    };
    Summary {
        requests_per_s: median(|r| r.requests_per_s),
        p50_ms: median(|r| r.p50_ms),
        p99_ms: median(|r| r.p99_ms),
        errors: runs.iter().map(|r| r.errors).sum(),
        requests: runs.iter().map(|r| r.requests).sum(),
    }
}

/// Runs the benchmark; `this_exe` is the default build under test.
pub async fn run_api_bench(args: BenchApiArgs, this_exe: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.concurrency > 0 && args.rounds > 0,
        "--concurrency and --rounds must be at least 1"
    );
    let bins = if args.bins.is_empty() {
        vec![this_exe.to_owned()]
    } else {
        args.bins.clone()
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut apis = Vec::new();
    for (i, bin) in bins.iter().enumerate() {
        apis.push(start_api(bin, &client, i).await?);
    }
    let first = &apis[0];
    let sample = client
        .get(format!("{}/v1/items/{}", first.base, first.item_id))
        .bearer_auth(&first.token)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    let response_bytes = sample.len();
    let ceiling_base = format!("http://{}", start_ceiling(sample)?);

    let plan = LoadPlan {
        concurrency: args.concurrency,
        duration: args.duration,
        max_requests: u64::MAX,
        rate: None,
    };
    let targets = apis.len() + 1;
    let mut get_runs = vec![Vec::new(); targets];
    let mut post_runs = vec![Vec::new(); targets];
    for round in 1..=args.rounds {
        for t in 0..targets {
            let (name, base, token, id) = if t == 0 {
                ("ceiling (bare axum)", ceiling_base.as_str(), "-", 1)
            } else {
                let a = &apis[t - 1];
                (
                    a.name.as_str(),
                    a.base.as_str(),
                    a.token.as_str(),
                    a.item_id,
                )
            };
            eprintln!("round {round}/{}: {name}", args.rounds);
            let (get, post) = measure(&client, plan, base, token, id).await?;
            get_runs[t].push(get);
            post_runs[t].push(post);
        }
    }
    let result = |t: usize, name: String| TargetResult {
        name,
        get_item: summarise(&get_runs[t]),
        post_item: summarise(&post_runs[t]),
    };
    let report = BenchReport {
        concurrency: args.concurrency,
        duration_s: args.duration.as_secs_f64(),
        rounds: args.rounds,
        response_bytes,
        ceiling: result(0, "ceiling (bare axum)".into()),
        builds: apis
            .iter()
            .enumerate()
            .map(|(i, a)| result(i + 1, a.name.clone()))
            .collect(),
    };
    for api in apis {
        api.target.stop().await;
    }
    if args.json {
        warden_telemetry::outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        print_table(&report)?;
    }
    Ok(())
}

fn print_table(report: &BenchReport) -> anyhow::Result<()> {
    warden_telemetry::outln!(
        "warden bench api: {} connections, {} s per measurement, median of {} rounds, {}-byte item",
        report.concurrency,
        report.duration_s,
        report.rounds,
        report.response_bytes
    )?;
    warden_telemetry::outln!(
        "{:<48} {:>10} {:>8} {:>8} {:>9}   {:>10} {:>8} {:>8} {:>9}",
        "target",
        "GET req/s",
        "p50 ms",
        "p99 ms",
        "% ceil",
        "POST req/s",
        "p50 ms",
        "p99 ms",
        "% ceil"
    )?;
    let ceiling = &report.ceiling;
    let reference = report.builds.first();
    for t in std::iter::once(ceiling).chain(report.builds.iter()) {
        warden_telemetry::outln!(
            "{:<48} {:>10.0} {:>8.2} {:>8.2} {:>8.1}%   {:>10.0} {:>8.2} {:>8.2} {:>8.1}%",
            t.name,
            t.get_item.requests_per_s,
            t.get_item.p50_ms,
            t.get_item.p99_ms,
            100.0 * t.get_item.requests_per_s / ceiling.get_item.requests_per_s.max(f64::EPSILON),
            t.post_item.requests_per_s,
            t.post_item.p50_ms,
            t.post_item.p99_ms,
            100.0 * t.post_item.requests_per_s / ceiling.post_item.requests_per_s.max(f64::EPSILON),
        )?;
    }
    if let Some(reference) = reference {
        for other in report.builds.iter().skip(1) {
            warden_telemetry::outln!(
                "{} vs {}: GET {:.1}%, POST {:.1}% of the first build's throughput",
                other.name,
                reference.name,
                100.0 * other.get_item.requests_per_s
                    / reference.get_item.requests_per_s.max(f64::EPSILON),
                100.0 * other.post_item.requests_per_s
                    / reference.post_item.requests_per_s.max(f64::EPSILON),
            )?;
        }
    }
    let errors: u64 = std::iter::once(ceiling)
        .chain(report.builds.iter())
        .map(|t| t.get_item.errors + t.post_item.errors)
        .sum();
    if errors > 0 {
        warden_telemetry::outln!(
            "warning: {errors} requests failed or answered an unexpected status"
        )?;
    }
    Ok(())
}
