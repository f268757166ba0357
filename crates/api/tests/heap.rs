//! Retained-heap tests: the JSON request path and the authentication path run
//! thousands of times in-process, and the heap still allocated afterwards must not
//! have grown.
//!
//! A dependency update that leaks (the outage's JSON library leaked on every request)
//! fails here before it ships. dhat's testing mode counts every allocation and free in
//! the process. Each measurement first runs a warm-up, so that lazily initialised
//! statics, caches filling to their steady size and the runtime's own buffers do not
//! count, then reads the live heap before and after each of two rounds of the same
//! work (see [`Retention`] for why two).
//!
//! Only one dhat profiler may run at a time in a process. `cargo nextest` runs every
//! test in a process of its own; under plain `cargo test` the tests of this file share
//! one, so each takes its turn through [`profile_heap`].
//!
//! To see which allocation site grew after a failure, run the failing scenario under
//! `dhat::Profiler::new_heap()` and open `dhat-heap.json` in dhat's viewer, sorted by
//! "At t-end".

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::FromRef;
use axum::handler::Handler;
use axum::http::{Request, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body_util::BodyExt as _;
use serde_json::Value;
use tower::ServiceExt as _;
use warden_api::auth::{AuthUser, LoginThrottle, Passwords, SessionCache, new_token, token_digest};
use warden_api::db::{Db, now_ms};
use warden_api::json::{ApiJson, JsonLimits, parse_json_body};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

// ---------------------------------------------------------------------------------
// The measuring harness, shared by every scenario and by the leak the tests must catch.
// ---------------------------------------------------------------------------------

/// Whose turn it is to run dhat's profiler (one per process).
static PROFILER_TURN: Mutex<()> = Mutex::new(());

/// The process-wide heap profiler, held by one test at a time. Started before the
/// scenario's setup, so that everything the setup allocates is tracked: dhat counts
/// the first reallocation of a block it never saw as a whole new block, which would
/// read as growth.
struct HeapProfile {
    // Fields drop in order: the profiler stops before the next test may start one.
    _profiler: dhat::Profiler,
    _turn: MutexGuard<'static, ()>,
}

fn profile_heap() -> HeapProfile {
    // A test that failed while holding the turn poisons the lock; the next test
    // starts a fresh profiler all the same.
    let turn = PROFILER_TURN.lock().unwrap_or_else(PoisonError::into_inner);
    HeapProfile {
        _profiler: dhat::Profiler::builder().testing().build(),
        _turn: turn,
    }
}

/// Bytes and blocks allocated and not yet freed, process-wide, read once the heap
/// has stopped changing.
///
/// Other threads finish their part of an operation after the caller has its answer:
/// sqlx's SQLite worker thread goes back to waiting on its channel (which allocates),
/// tokio's blocking thread drops its task. A reading taken meanwhile would count
/// that transient state; so read until the heap has been still for 15 ms.
fn live_heap(_: &HeapProfile) -> (i64, i64) {
    let read = || {
        let stats = dhat::HeapStats::get();
        (
            i64::try_from(stats.curr_bytes).unwrap(),
            i64::try_from(stats.curr_blocks).unwrap(),
        )
    };
    let mut last = read();
    let mut still = 0;
    for _ in 0..400 {
        std::thread::sleep(Duration::from_millis(5));
        let now = read();
        still = if now == last { still + 1 } else { 0 };
        last = now;
        if still == 3 {
            break;
        }
    }
    last
}

/// Retained-heap budget for a round of `operations` requests or calls: 64 bytes per
/// 1000, and never less than 64 bytes.
///
/// dhat counts the bytes requested, so the smallest possible leak (a `Box<u8>`)
/// counts 1 byte: leaking a single byte on every operation, or 16 bytes on every
/// 200th, exceeds this budget. The slack is for one-off growth that a warm-up
/// cannot always reach, such as a library's table or vector of eight pointers
/// doubling once (64 bytes).
fn allowance(operations: usize) -> i64 {
    let operations = i64::try_from(operations).unwrap();
    (operations * 64 / 1000).max(64)
}

/// How long a scenario runs: `warm_up` iterations, then two rounds of `per_round`.
/// Each iteration performs `operations` requests or calls (the unit of the allowance).
#[derive(Debug, Clone, Copy)]
struct Plan {
    warm_up: usize,
    per_round: usize,
    operations: usize,
}

/// How much the live heap grew over each of two equal rounds of a scenario.
#[derive(Debug)]
struct Retention {
    scenario: &'static str,
    plan: Plan,
    bytes: [i64; 2],
    blocks: [i64; 2],
}

impl Retention {
    /// The growth the verdict rests on: the smaller of the two rounds. A leak grows
    /// the heap in every round. Another thread's one-off allocation lands in at most
    /// one: under plain `cargo test`, libtest records the previous test's result and
    /// starts the next test's thread while this one runs.
    fn growth(&self) -> i64 {
        self.bytes[0].min(self.bytes[1])
    }

    /// Passes when the growth is within [`allowance`] plus `band`: how far the
    /// scenario's live heap is known to wander without leaking (0 for most).
    fn verdict(&self, band: i64) -> Result<(), String> {
        let operations = self.plan.per_round * self.plan.operations;
        let allowed = band + allowance(operations);
        if self.growth() <= allowed {
            Ok(())
        } else {
            Err(format!(
                "{}: the live heap grew by {:?} bytes ({:?} blocks) in two rounds of \
                 {operations} operations after a warm-up; at most {allowed} bytes a round \
                 are allowed",
                self.scenario, self.bytes, self.blocks
            ))
        }
    }

    fn assert_within(&self, band: i64) {
        eprintln!("{self:?}");
        if let Err(report) = self.verdict(band) {
            panic!("{report}");
        }
    }

    fn assert_no_leak(&self) {
        self.assert_within(0);
    }
}

/// Runs `iteration` for the plan's warm-up, then reads the live heap around each of
/// its two rounds.
fn measure_retention(
    heap: &HeapProfile,
    scenario: &'static str,
    plan: Plan,
    mut iteration: impl FnMut(),
) -> Retention {
    for _ in 0..plan.warm_up {
        iteration();
    }
    let mut bytes = [0; 2];
    let mut blocks = [0; 2];
    for round in 0..2 {
        let before = live_heap(heap);
        for _ in 0..plan.per_round {
            iteration();
        }
        let after = live_heap(heap);
        bytes[round] = after.0 - before.0;
        blocks[round] = after.1 - before.1;
    }
    Retention {
        scenario,
        plan,
        bytes,
        blocks,
    }
}

/// A single-threaded runtime, kept alive across warm-up and measurement so that its
/// buffers are sized once. One blocking thread, kept for the whole test: the pool can
/// then neither start nor retire a thread between two readings of the heap.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(1)
        .thread_keep_alive(Duration::from_secs(3600))
        .build()
        .unwrap()
}

/// Runs `work` to completion, then keeps the runtime going until the tasks the work
/// spawned have finished too (sqlx hands a connection back to its pool, after a
/// round trip to the SQLite worker thread, on a task of its own), so that none is
/// still pending, holding memory, when the heap is read.
fn run_settled<F: Future>(runtime: &tokio::runtime::Runtime, work: F) -> F::Output {
    let metrics = runtime.metrics();
    let tasks_before = metrics.num_alive_tasks();
    runtime.block_on(async {
        let output = work.await;
        // Bounded, so that a task that never ends shows up as growth, not as a hang.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while metrics.num_alive_tasks() > tasks_before && std::time::Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
        output
    })
}

// ---------------------------------------------------------------------------------
// The JSON request path.
// ---------------------------------------------------------------------------------

const MAX_BYTES: usize = 128 * 1024;
const MAX_DEPTH: usize = 64;

fn limits() -> JsonLimits {
    JsonLimits {
        max_bytes: MAX_BYTES,
        max_depth: MAX_DEPTH,
    }
}

/// The shape behind `/typed`, to exercise serde's typed path and its 422s.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewItem {
    title: String,
    data: Value,
}

async fn echo(ApiJson(doc): ApiJson<Value>) -> Json<Value> {
    Json(doc)
}

async fn create_item(ApiJson(item): ApiJson<NewItem>) -> (StatusCode, String) {
    let summary = format!(
        "{} ({} fields)",
        item.title,
        item.data.as_object().map_or(0, |o| o.len())
    );
    (StatusCode::CREATED, summary)
}

/// Bytes leaked by [`echo_and_leak`] on every request it answers.
const LEAK_BYTES: usize = 16;

/// [`echo`] with a leak of the kind these tests exist to catch.
async fn echo_and_leak(body: ApiJson<Value>) -> Json<Value> {
    std::mem::forget(std::hint::black_box(Vec::<u8>::with_capacity(LEAK_BYTES)));
    echo(body).await
}

/// `/doc` answered by `doc_handler`, and `/typed`.
fn json_app<H, T>(doc_handler: H) -> Router
where
    H: Handler<T, JsonLimits>,
    T: 'static,
{
    Router::new()
        .route("/doc", post(doc_handler))
        .route("/typed", post(create_item))
        .with_state(limits())
}

/// One request of the mix and the status it must get.
struct JsonCase {
    name: &'static str,
    path: &'static str,
    content_type: Option<&'static str>,
    body: Bytes,
    declare_length: bool,
    expect: StatusCode,
}

fn case(
    name: &'static str,
    path: &'static str,
    body: impl Into<Bytes>,
    expect: StatusCode,
) -> JsonCase {
    JsonCase {
        name,
        path,
        content_type: Some("application/json"),
        body: body.into(),
        declare_length: true,
        expect,
    }
}

fn nested(depth: usize) -> String {
    // Objects and arrays alternating, with a value at the bottom.
    let mut doc = String::new();
    for level in 0..depth {
        doc.push_str(if level % 2 == 0 { r#"{"k":"# } else { "[" });
    }
    doc.push_str(r#""bottom""#);
    for level in (0..depth).rev() {
        doc.push(if level % 2 == 0 { '}' } else { ']' });
    }
    doc
}

fn large_document(at_least: usize) -> String {
    let mut doc = String::from(r#"{"items":["#);
    let mut i = 0;
    while doc.len() < at_least {
        if i > 0 {
            doc.push(',');
        }
        doc.push_str(&format!(
            r#"{{"id":{i},"name":"item number {i}","tags":["red","green"],"price":{}.25,"ok":true,"note":null}}"#,
            i % 97
        ));
        i += 1;
    }
    doc.push_str("]}");
    doc
}

fn unicode_document() -> String {
    let phrase =
        r#"naïve café — Ωμέγα, Жизнь, 漢字かな, 🦀🎉, \u00e9\ud83e\udd80 \"quoted\" \\ \n\t"#;
    let mut doc = String::from(r#"{"ключ":["#);
    for i in 0..40 {
        if i > 0 {
            doc.push(',');
        }
        doc.push_str(&format!(r#"{{"名前{i}":"{phrase}","emoji🦀":"{phrase}"}}"#));
    }
    doc.push_str("]}");
    doc
}

/// A varied mix of good and bad bodies, each with the status it must get; the
/// status check proves every request took the path it is meant to exercise.
fn json_cases() -> Vec<JsonCase> {
    let ok = StatusCode::OK;
    let bad = StatusCode::BAD_REQUEST;
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    let unsupported = StatusCode::UNSUPPORTED_MEDIA_TYPE;
    let too_large = StatusCode::PAYLOAD_TOO_LARGE;
    let large = large_document(64 * 1024);
    assert!(large.len() < MAX_BYTES);
    let oversized = large_document(MAX_BYTES + 64 * 1024);
    let huge = large_document(2 * 1024 * 1024);
    vec![
        case("small", "/doc", r#"{"title":"milk","data":{"n":2}}"#, ok),
        case("scalar", "/doc", "42", ok),
        case("large (64 KiB)", "/doc", large, ok),
        case("deep but allowed", "/doc", nested(MAX_DEPTH), ok),
        case("unicode-heavy", "/doc", unicode_document(), ok),
        case(
            "typed",
            "/typed",
            r#"{"title":"milk","data":{"n":2,"unit":"litre"}}"#,
            StatusCode::CREATED,
        ),
        case("trailing comma", "/doc", "{\"a\": 1,\n}", bad),
        case("truncated", "/doc", r#"{"a": [1, 2"#, bad),
        case("bare word", "/doc", "nul", bad),
        case("empty", "/doc", "", bad),
        case("too deep", "/doc", nested(MAX_DEPTH + 1), bad),
        case("far too deep", "/doc", "[".repeat(50_000), bad),
        case("invalid UTF-8", "/doc", &b"{\"a\": \"\xff\xfe\"}"[..], bad),
        case("encoded surrogate", "/doc", &b"[\"\xed\xa0\x80\"]"[..], bad),
        case(
            "unknown field",
            "/typed",
            r#"{"title":"x","data":1,"extra":2}"#,
            unprocessable,
        ),
        case("missing field", "/typed", r#"{"title":"x"}"#, unprocessable),
        case(
            "wrong type",
            "/typed",
            r#"{"title":7,"data":1}"#,
            unprocessable,
        ),
        case("array, not object", "/typed", "[]", unprocessable),
        JsonCase {
            content_type: Some("text/plain"),
            ..case("text/plain", "/doc", "{}", unsupported)
        },
        JsonCase {
            content_type: Some("application/json; charset=latin1"),
            ..case("latin1", "/doc", "{}", unsupported)
        },
        JsonCase {
            content_type: None,
            ..case("no content type", "/doc", "{}", unsupported)
        },
        JsonCase {
            content_type: Some("application/merge-patch+json; charset=utf-8"),
            ..case("+json", "/doc", r#"{"a":null}"#, ok)
        },
        JsonCase {
            // Read to the end and refused: no length to refuse it by.
            declare_length: false,
            ..case("oversized, length unknown", "/doc", oversized, too_large)
        },
        // Refused by its declared length before a byte is read.
        case("oversized, length declared", "/doc", huge, too_large),
    ]
}

fn request(case: &JsonCase) -> Request<Body> {
    let mut builder = Request::post(case.path);
    if let Some(content_type) = case.content_type {
        builder = builder.header(header::CONTENT_TYPE, content_type);
    }
    if case.declare_length {
        builder = builder.header(header::CONTENT_LENGTH, case.body.len());
    }
    // `Bytes` clones share the buffer: no copy per request.
    builder.body(Body::from(case.body.clone())).unwrap()
}

/// Sends every case once through the router, in-process, and reads each answer.
async fn send_all(app: &Router, cases: &[JsonCase]) {
    for case in cases {
        let response = app.clone().oneshot(request(case)).await.unwrap();
        assert_eq!(response.status(), case.expect, "{}", case.name);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        std::hint::black_box(body);
    }
}

/// Passes over the JSON mix; each pass sends every case once.
fn json_plan(cases: &[JsonCase]) -> Plan {
    Plan {
        warm_up: 10,
        per_round: 90,
        operations: cases.len(),
    }
}

fn json_path_retention(heap: &HeapProfile, app: &Router, cases: &[JsonCase]) -> Retention {
    let runtime = runtime();
    measure_retention(heap, "JSON extractor", json_plan(cases), || {
        run_settled(&runtime, send_all(app, cases));
    })
}

#[test]
fn json_extractor_retains_no_memory() {
    let heap = profile_heap();
    let cases = json_cases();
    json_path_retention(&heap, &json_app(echo), &cases).assert_no_leak();
}

#[test]
fn the_harness_catches_a_handler_leaking_16_bytes_per_request() {
    let heap = profile_heap();
    let cases = json_cases();
    let retention = json_path_retention(&heap, &json_app(echo_and_leak), &cases);
    let answered_by_handler = cases
        .iter()
        .filter(|c| c.path == "/doc" && c.expect.is_success())
        .count();
    let leaked_per_round = LEAK_BYTES * answered_by_handler * json_plan(&cases).per_round;
    let leaked_per_round = i64::try_from(leaked_per_round).unwrap();
    eprintln!("{retention:?}; leaked on purpose: {leaked_per_round} bytes a round");
    assert!(
        retention.growth() >= leaked_per_round,
        "the leak was not measured in full: {retention:?}, \
         expected at least {leaked_per_round} bytes a round"
    );
    assert!(retention.verdict(0).is_err(), "the leak passed the verdict");
}

#[test]
fn parse_json_body_retains_no_memory() {
    let heap = profile_heap();
    let limits = limits();
    let cases = json_cases();
    let plan = Plan {
        operations: 2 * cases.len(),
        ..json_plan(&cases)
    };
    let retention = measure_retention(&heap, "parse_json_body", plan, || {
        for case in &cases {
            // Errors become their problem documents, as they would in a response.
            let doc = parse_json_body::<Value>(&case.body, &limits);
            let item = parse_json_body::<NewItem>(&case.body, &limits);
            let _ = std::hint::black_box((
                doc.map_err(IntoResponse::into_response),
                item.map_err(IntoResponse::into_response),
            ));
        }
    });
    retention.assert_no_leak();
}

// ---------------------------------------------------------------------------------
// The authentication path.
// ---------------------------------------------------------------------------------

#[test]
fn password_hashing_retains_no_memory() {
    let heap = profile_heap();
    let runtime = runtime();
    let passwords = Passwords::new(1).unwrap();
    // Argon2id with 19 MiB takes tens of milliseconds per call: few iterations, each
    // of which hashes once and verifies three ways (right, wrong, unknown account).
    let plan = Plan {
        warm_up: 2,
        per_round: 3,
        operations: 4,
    };
    let retention = measure_retention(&heap, "password hash and verify", plan, || {
        run_settled(&runtime, async {
            let hash = passwords
                .hash("correct horse battery".into())
                .await
                .unwrap();
            let right = passwords.verify(Some(hash.clone()), "correct horse battery".into());
            assert!(right.await.unwrap());
            let wrong = passwords.verify(Some(hash), "wrong horse battery".into());
            assert!(!wrong.await.unwrap());
            let unknown = passwords.verify(None, "correct horse battery".into());
            assert!(!unknown.await.unwrap());
        });
    });
    retention.assert_no_leak();
}

#[test]
fn session_tokens_retain_no_memory() {
    let heap = profile_heap();
    let plan = Plan {
        warm_up: 100,
        per_round: 2000,
        operations: 1,
    };
    let retention = measure_retention(&heap, "token and digest", plan, || {
        let token = new_token();
        std::hint::black_box(token_digest(&token));
    });
    retention.assert_no_leak();
}

#[derive(Clone, FromRef)]
struct SessionState {
    db: Db,
    sessions: SessionCache,
}

async fn whoami(user: AuthUser) -> String {
    user.user_id.to_string()
}

/// An app that resolves bearer tokens, over a fresh SQLite database holding one user
/// and `sessions` unexpired sessions, whose tokens it returns.
struct SessionApp {
    app: Router,
    cache: SessionCache,
    tokens: Vec<String>,
    _dir: tempfile::TempDir,
}

fn session_app(runtime: &tokio::runtime::Runtime, sessions: usize) -> SessionApp {
    let dir = tempfile::tempdir().unwrap();
    let url = warden_api::config::sqlite_url(&dir.path().join("heap.sqlite3"));
    runtime.block_on(async {
        // One connection. sqlx's SQLite worker sizes its command queue the first time
        // a command arrives while it is still busy, a moment that depends on thread
        // timing and may fall after the warm-up: with one worker it happens once, in
        // one round at most.
        let db = Db::connect(&url, 1).await.unwrap();
        let user = db
            .insert_user("heap@example.com", "not a real hash")
            .await
            .unwrap()
            .unwrap();
        let tokens: Vec<String> = (0..sessions).map(|_| new_token()).collect();
        for token in &tokens {
            let expires_at = now_ms() + 3_600_000;
            db.insert_session(&token_digest(token), user.id, expires_at)
                .await
                .unwrap();
        }
        // A long TTL, so that no entry ages out during the test.
        let cache = SessionCache::new(Duration::from_secs(3600));
        let state = SessionState {
            db,
            sessions: cache.clone(),
        };
        SessionApp {
            app: Router::new().route("/me", get(whoami)).with_state(state),
            cache,
            tokens,
            _dir: dir,
        }
    })
}

/// Sends `GET /me` with each `Authorization` header (or none) and reads the answer.
async fn authenticate_all(app: &Router, headers: &[(Option<String>, StatusCode)]) {
    for (authorization, expect) in headers {
        let mut builder = Request::get("/me");
        if let Some(value) = authorization {
            builder = builder.header(header::AUTHORIZATION, value);
        }
        let request = builder.body(Body::empty()).unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), *expect, "{authorization:?}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        std::hint::black_box(body);
    }
}

#[test]
fn session_lookup_retains_no_memory() {
    let heap = profile_heap();
    let runtime = runtime();
    let sessions = session_app(&runtime, 2);
    let bearer = |token: &str| Some(format!("Bearer {token}"));
    // The same headers on every iteration: the two sessions enter the cache on the
    // warm-up's first lookup and are answered from it ever after, so the cache holds
    // two entries however many requests follow. The unknown token is looked up in
    // the database every time and never cached.
    let headers = [
        (bearer(&sessions.tokens[0]), StatusCode::OK),
        (bearer(&sessions.tokens[1]), StatusCode::OK),
        (bearer(&new_token()), StatusCode::UNAUTHORIZED),
        (bearer(&"x".repeat(200)), StatusCode::UNAUTHORIZED),
        (
            Some("Basic aGVhcDpoZWFw".to_owned()),
            StatusCode::UNAUTHORIZED,
        ),
        (None, StatusCode::UNAUTHORIZED),
    ];
    let plan = Plan {
        warm_up: 100,
        per_round: 300,
        operations: headers.len(),
    };
    let retention = measure_retention(&heap, "bearer token lookup", plan, || {
        run_settled(&runtime, authenticate_all(&sessions.app, &headers));
    });
    retention.assert_no_leak();
}

/// How far the live heap wanders while sessions are revoked and cached again.
///
/// moka retires a removed entry in batches, not at once: through crossbeam-epoch
/// garbage bags of about 2 KiB and a rehash of its table every few hundred inserts.
/// Under this churn the live heap saws within a band that measured 12.8 KiB from
/// low to high over 6000 iterations, returning to the same low each time.
const SESSION_CHURN_BAND: i64 = 16 * 1024;

#[test]
fn session_revoke_and_refill_stays_within_the_caches_band() {
    let heap = profile_heap();
    let runtime = runtime();
    let sessions = session_app(&runtime, 1);
    let token = &sessions.tokens[0];
    let digest = token_digest(token);
    let headers = [(Some(format!("Bearer {token}")), StatusCode::OK)];
    // Every iteration removes the one session from the cache; the request then finds
    // it in the database and caches it again. Long rounds, so that a leak of a few
    // bytes per revocation outgrows the band: 8 bytes each is 24,000 bytes a round,
    // more than the band and half of it (where on the saw a round starts) together.
    let plan = Plan {
        warm_up: 300,
        per_round: 3000,
        operations: 1,
    };
    let retention = measure_retention(&heap, "session revoke and refill", plan, || {
        sessions.cache.revoke(&digest);
        run_settled(&runtime, authenticate_all(&sessions.app, &headers));
    });
    retention.assert_within(SESSION_CHURN_BAND);
}

#[test]
fn login_throttle_retains_no_memory() {
    let heap = profile_heap();
    let throttle = LoginThrottle::new(Duration::from_secs(3600), 5, 50, 100);
    let emails = [
        "a@example.com",
        "b@example.com",
        "c@example.com",
        "d@example.com",
    ];
    let addresses: [IpAddr; 2] = [[192, 0, 2, 1].into(), "2001:db8::1".parse().unwrap()];
    // The cache holds an entry per account, per address and per pair, and every
    // iteration ends with the same keys in it, so it stops growing once the warm-up
    // has seen them all. Half the pairs then log in successfully (their entry goes,
    // and comes back with the next failure); the others and both addresses stay
    // throttled, so once the warm-up is past, every `check` also builds its 429.
    let plan = Plan {
        warm_up: 100,
        per_round: 2000,
        operations: emails.len(),
    };
    let retention = measure_retention(&heap, "login throttle", plan, || {
        for (i, email) in emails.iter().enumerate() {
            let address = addresses[i % addresses.len()];
            let refusal = throttle.check(email, address);
            let _ = std::hint::black_box(refusal.map_err(IntoResponse::into_response));
            throttle.record_failure(email, address);
            if i % 2 == 0 {
                throttle.record_success(email, address);
            }
        }
    });
    retention.assert_no_leak();
}
