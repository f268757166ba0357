//! The workload: what the memory test asks of the API, round after round.
//!
//! Setup registers a pool of users, logs each in once and gives each a fixed set of
//! items. Every round then sends the same mix, closed loop (or at a fixed rate), over
//! fresh keep-alive connections, in blocks of 20 operations: 5 item reads, a list,
//! `/v1/me`, 4 creates with payloads that vary in size (1–64 KiB), depth (up to 60)
//! and script (CJK, emoji, combining marks, escapes), an update, 4 deletes of items
//! the round created, malformed JSON, a bad token, a wrong content type and a
//! too-deep document. Spread through the mix: every 200th operation sends an
//! oversized body (413), every 200th is a whole session (log in — argon2 on the
//! server — use the token, log out), every 1000th registers a new user. At the end
//! of the round it deletes what the round created and closes its connections.
//!
//! Everything the scenario does is in proportion to the requests sent — no fixed
//! cost per round — so a leak shows as bytes per request whatever its path, and the
//! database keeps its size from round to round (bar the new users).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::{Value, json};

use crate::load::{self, Answer, LoadPlan, LoadReport};

/// Items every pool user owns between rounds.
const BASE_ITEMS: usize = 5;
const PASSWORD: &str = "memtest password 0123";
/// Bigger than the API's default 256 KiB body limit.
const OVERSIZED_BYTES: usize = 300 * 1024;

/// The pool of accounts and their standing items.
pub struct World {
    base: String,
    run_id: String,
    users: Vec<Account>,
    /// The pool users' sessions, one each, for the whole test.
    tokens: Vec<String>,
}

struct Account {
    email: String,
    /// Ids of the items the user owns, oldest first; the first `BASE_ITEMS` stay.
    items: Mutex<VecDeque<i64>>,
}

impl Account {
    /// The newest item beyond the standing ones, taken off the list to be deleted.
    fn pop_extra(&self) -> Option<i64> {
        let mut items = lock(&self.items);
        if items.len() > BASE_ITEMS {
            items.pop_back()
        } else {
            None
        }
    }
}

/// What one round did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RoundLoad {
    /// Requests sent, including logins, registrations and cleanup.
    pub requests: u64,
    /// Requests whose answer was not the one the scenario expects.
    pub errors: u64,
    /// Latency of the main mix.
    pub load: LoadReport,
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_idle_timeout(None)
        .build()?)
}

async fn expect(request: reqwest::RequestBuilder, status: StatusCode) -> anyhow::Result<Value> {
    let response = request.send().await?;
    let got = response.status();
    let body = response.bytes().await?;
    anyhow::ensure!(
        got == status,
        "expected {status}, got {got}: {}",
        String::from_utf8_lossy(&body)
    );
    Ok(serde_json::from_slice(&body).unwrap_or(Value::Null))
}

impl World {
    /// Registers `users` accounts (named after this run, so a running service can be
    /// tested repeatedly) and creates their standing items.
    pub async fn setup(base: &str, users: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(users > 0, "the scenario needs at least one user");
        let run_id = format!("{:08x}", rand::random::<u32>());
        let client = client()?;
        let mut accounts = Vec::with_capacity(users);
        for i in 0..users {
            let email = format!("memtest-{run_id}-{i}@example.com");
            expect(
                client
                    .post(format!("{base}/v1/users"))
                    .json(&json!({"email": email, "password": PASSWORD})),
                StatusCode::CREATED,
            )
            .await
            .with_context(|| format!("registering {email}"))?;
            accounts.push(Account {
                email,
                items: Mutex::new(VecDeque::new()),
            });
        }
        let mut world = Self {
            base: base.to_owned(),
            run_id,
            users: accounts,
            tokens: Vec::new(),
        };
        world.tokens = world.log_in(&client).await?;
        for (user, token) in world.users.iter().zip(&world.tokens) {
            for n in 0..BASE_ITEMS {
                let item = expect(
                    client
                        .post(format!("{base}/v1/items"))
                        .bearer_auth(token)
                        .json(&json!({"title": format!("standing item {n}"), "data": {"n": n}})),
                    StatusCode::CREATED,
                )
                .await
                .context("creating the standing items")?;
                let id = item["id"].as_i64().context("no id in a created item")?;
                lock(&user.items).push_back(id);
            }
        }
        Ok(world)
    }

    async fn log_in(&self, client: &reqwest::Client) -> anyhow::Result<Vec<String>> {
        let mut tokens = Vec::with_capacity(self.users.len());
        for user in &self.users {
            let session = expect(
                client
                    .post(format!("{}/v1/sessions", self.base))
                    .json(&json!({"email": user.email, "password": PASSWORD})),
                StatusCode::CREATED,
            )
            .await
            .with_context(|| format!("logging in {}", user.email))?;
            let token = session["token"].as_str().context("no token in a session")?;
            tokens.push(token.to_owned());
        }
        Ok(tokens)
    }

    /// Deletes every item beyond each user's standing ones.
    async fn trim(&self, client: &reqwest::Client, tokens: &[String]) -> anyhow::Result<u64> {
        let mut requests = 0;
        for (user, token) in self.users.iter().zip(tokens) {
            while let Some(id) = user.pop_extra() {
                requests += 1;
                expect(
                    client
                        .delete(format!("{}/v1/items/{id}", self.base))
                        .bearer_auth(token),
                    StatusCode::NO_CONTENT,
                )
                .await
                .context("deleting the round's items")?;
            }
        }
        Ok(requests)
    }

    /// Runs round `round` under `plan`; `sent` counts every request as it completes.
    pub async fn round(
        self: &Arc<Self>,
        round: u32,
        plan: LoadPlan,
        sent: Arc<AtomicU64>,
    ) -> anyhow::Result<RoundLoad> {
        // Fresh connections each round, closed at its end: the server's
        // per-connection buffers are gone by the time memory is read.
        let client = client()?;
        let world = Arc::clone(self);
        let mix_client = client.clone();
        let mix_sent = Arc::clone(&sent);
        let report = load::run(plan, move |n| {
            let world = Arc::clone(&world);
            let client = mix_client.clone();
            let sent = Arc::clone(&mix_sent);
            async move {
                let (answer, requests) = world.request(&client, round, n).await;
                sent.fetch_add(requests, Ordering::Relaxed);
                answer
            }
        })
        .await?;
        let trimmed = self.trim(&client, &self.tokens).await?;
        sent.fetch_add(trimmed, Ordering::Relaxed);
        Ok(RoundLoad {
            requests: report.requests + trimmed,
            errors: report.errors,
            load: report,
        })
    }

    /// A whole session: log in (argon2 on the server), use the token, log out.
    async fn session_lifecycle(
        &self,
        client: &reqwest::Client,
        user: &Account,
    ) -> anyhow::Result<()> {
        let session = expect(
            client
                .post(format!("{}/v1/sessions", self.base))
                .json(&json!({"email": user.email, "password": PASSWORD})),
            StatusCode::CREATED,
        )
        .await?;
        let token = session["token"].as_str().context("no token in a session")?;
        expect(
            client
                .get(format!("{}/v1/me", self.base))
                .bearer_auth(token),
            StatusCode::OK,
        )
        .await?;
        expect(
            client
                .delete(format!("{}/v1/sessions/current", self.base))
                .bearer_auth(token),
            StatusCode::NO_CONTENT,
        )
        .await?;
        Ok(())
    }

    /// Sends operation `n` of round `round`'s mix: whether every answer was the
    /// expected one, and how many requests it took. Operations that hash a password
    /// are not timed: they are slow on purpose, and at 0.6% of the mix they would
    /// put the p99 on the edge between two populations.
    async fn request(&self, client: &reqwest::Client, round: u32, n: u64) -> (Answer, u64) {
        let untimed = |ok| Answer { ok, timed: false };
        let u = ((n / 20) as usize) % self.users.len();
        let (user, token) = (&self.users[u], &self.tokens[u]);
        if n % 1000 == 537 {
            let email = format!("memtest-{}-r{round}-{n}@example.com", self.run_id);
            let request = client
                .post(format!("{}/v1/users", self.base))
                .json(&json!({"email": email, "password": PASSWORD}));
            return (
                untimed(expect(request, StatusCode::CREATED).await.is_ok()),
                1,
            );
        }
        if n % 200 == 37 {
            return (
                untimed(self.session_lifecycle(client, user).await.is_ok()),
                3,
            );
        }
        let base = &self.base;
        let auth = format!("Bearer {token}");
        let item_url = |id: i64| format!("{base}/v1/items/{id}");
        let post_raw = |content_type: &str, body: reqwest::Body| {
            client
                .post(format!("{base}/v1/items"))
                .header(AUTHORIZATION, &auth)
                .header(CONTENT_TYPE, content_type)
                .body(body)
        };
        let standing = {
            let items = lock(&user.items);
            items
                .get((n as usize / 20) % BASE_ITEMS.min(items.len().max(1)))
                .copied()
        };
        let Some(standing) = standing else {
            return (false.into(), 1);
        };
        let (request, status) = if n % 200 == 117 {
            (
                post_raw("application/json", oversized_body().into()),
                StatusCode::PAYLOAD_TOO_LARGE,
            )
        } else {
            match n % 20 {
                0..=4 => (
                    client.get(item_url(standing)).header(AUTHORIZATION, &auth),
                    StatusCode::OK,
                ),
                5 => (
                    client
                        .get(format!("{base}/v1/items?limit=20"))
                        .header(AUTHORIZATION, &auth),
                    StatusCode::OK,
                ),
                6 => (
                    client
                        .get(format!("{base}/v1/me"))
                        .header(AUTHORIZATION, &auth),
                    StatusCode::OK,
                ),
                7..=10 => {
                    let request = client
                        .post(format!("{base}/v1/items"))
                        .header(AUTHORIZATION, &auth)
                        .json(&payload(n));
                    let created = expect(request, StatusCode::CREATED).await;
                    let id = created.ok().and_then(|item| item["id"].as_i64());
                    if let Some(id) = id {
                        lock(&user.items).push_back(id);
                    }
                    return (id.is_some().into(), 1);
                }
                11 => (
                    client
                        .put(item_url(standing))
                        .header(AUTHORIZATION, &auth)
                        .json(&payload(n)),
                    StatusCode::OK,
                ),
                12..=15 => match user.pop_extra() {
                    Some(id) => (
                        client.delete(item_url(id)).header(AUTHORIZATION, &auth),
                        StatusCode::NO_CONTENT,
                    ),
                    None => (
                        client.get(item_url(standing)).header(AUTHORIZATION, &auth),
                        StatusCode::OK,
                    ),
                },
                16 => (
                    post_raw(
                        "application/json",
                        r#"{"title": "broken", "data": [1, 2,, 3]"#.into(),
                    ),
                    StatusCode::BAD_REQUEST,
                ),
                17 => (
                    client
                        .get(format!("{base}/v1/me"))
                        .header(AUTHORIZATION, "Bearer not-a-real-token-0123456789"),
                    StatusCode::UNAUTHORIZED,
                ),
                18 => (
                    post_raw("text/plain", "title=plain".into()),
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ),
                _ => (
                    post_raw("application/json", too_deep().into()),
                    StatusCode::BAD_REQUEST,
                ),
            }
        };
        let ok = match request.send().await {
            Ok(response) => {
                let got = response.status();
                response.bytes().await.is_ok() && got == status
            }
            Err(_) => false,
        };
        (ok.into(), 1)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// An item whose `data` varies with `n` in size, depth and script.
pub fn payload(n: u64) -> Value {
    let data = match (n / 20) % 4 {
        // Large: 1, 4, 16 or 64 KiB of records.
        0 => {
            let records = 8usize << (2 * ((n / 80) % 4));
            Value::Array(
                (0..records)
                    .map(|i| {
                        json!({"id": i, "name": format!("record {i} of {n}"), "score": i as f64 / 7.0,
                               "tags": ["alpha", "beta", "gamma"], "active": i % 2 == 0})
                    })
                    .collect(),
            )
        }
        // Deeply nested but within the API's default limit of 64.
        1 => {
            let depth = 10 + (n % 50) as usize;
            (0..depth).fold(json!({"leaf": n}), |inner, level| {
                if level % 2 == 0 {
                    json!([inner])
                } else {
                    json!({"level": level, "next": inner})
                }
            })
        }
        // Unicode-heavy: CJK, emoji, combining marks, right-to-left text.
        2 => json!({
            "text": "日本語のテキスト、中文文本，한국어 텍스트 ".repeat(1 + (n % 16) as usize),
            "emoji": "👩‍💻🚀🔥✨🧪".repeat(1 + (n % 8) as usize),
            "combining": "e\u{301}a\u{308}o\u{302}n\u{303}",
            "rtl": "עברית العربية",
            "escaped": "tab\there \"quoted\" \\ back\u{0001}",
        }),
        // Small.
        _ => json!({"n": n, "ok": true}),
    };
    json!({"title": format!("item {n} ✓"), "data": data})
}

fn oversized_body() -> Vec<u8> {
    let mut body = br#"{"title": "oversized", "data": ""#.to_vec();
    body.resize(OVERSIZED_BYTES, b'x');
    body.extend_from_slice(br#""}"#);
    body
}

fn too_deep() -> String {
    format!(
        r#"{{"title": "deep", "data": {}{}}}"#,
        "[".repeat(100),
        "]".repeat(100)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth(v: &Value) -> usize {
        match v {
            Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
            Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }

    #[test]
    fn payloads_stay_within_the_api_limits_and_vary() {
        let sizes: Vec<usize> = (0..400)
            .map(|n| serde_json::to_vec(&payload(n)).map_or(0, |b| b.len()))
            .collect();
        assert!(sizes.iter().all(|&s| s > 0 && s < 256 * 1024), "{sizes:?}");
        assert!(sizes.iter().max() > Some(&(48 * 1024)), "a large payload");
        assert!((0..400).map(|n| depth(&payload(n))).max() > Some(50));
        assert!((0..400).all(|n| depth(&payload(n)) <= 64));
        assert!(oversized_body().len() > 256 * 1024);
        let deep: Value = serde_json::from_str(&too_deep()).unwrap();
        assert!(
            depth(&deep) > 64,
            "must exceed the API's default depth limit"
        );
    }
}
