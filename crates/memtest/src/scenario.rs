//! The workload: what the memory test asks of the API, round after round.
//!
//! Setup registers a pool of users and gives each a fixed set of items. Every round
//! then does the same things, so that a program without a leak ends each round
//! holding the same memory as the last:
//!
//! 1. registers one new user and logs every pool user in (argon2 on the server);
//! 2. sends a closed-loop (or fixed-rate) mix over fresh keep-alive connections, in
//!    blocks of 20 requests: 5 item reads, a list, `/v1/me`, 4 creates with payloads
//!    that vary in size (1–64 KiB), depth (up to 60) and script (CJK, emoji,
//!    combining marks, escapes), an update, 4 deletes of items the round created,
//!    malformed JSON, a bad token, a wrong content type, a too-deep document — and
//!    every 100th request an oversized body (413);
//! 3. deletes what the round created and logs every session out.
//!
//! The database therefore keeps the same size from round to round (bar one user),
//! and the connections are closed at the end of each round, so that neither grows
//! what the server holds.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::{Value, json};

use crate::load::{self, LoadPlan, LoadReport};

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
}

struct Account {
    email: String,
    /// Ids of the items the user owns, oldest first; the first `BASE_ITEMS` stay.
    items: Mutex<VecDeque<i64>>,
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
        let world = Self {
            base: base.to_owned(),
            run_id,
            users: accounts,
        };
        let tokens = world.log_in(&client).await?;
        for (user, token) in world.users.iter().zip(&tokens) {
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
        world.log_out(&client, &tokens).await?;
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

    async fn log_out(&self, client: &reqwest::Client, tokens: &[String]) -> anyhow::Result<()> {
        for token in tokens {
            expect(
                client
                    .delete(format!("{}/v1/sessions/current", self.base))
                    .bearer_auth(token),
                StatusCode::NO_CONTENT,
            )
            .await
            .context("logging out")?;
        }
        Ok(())
    }

    /// Deletes every item beyond each user's standing ones.
    async fn trim(&self, client: &reqwest::Client, tokens: &[String]) -> anyhow::Result<u64> {
        let mut requests = 0;
        for (user, token) in self.users.iter().zip(tokens) {
            loop {
                let extra = {
                    let mut items = lock(&user.items);
                    if items.len() > BASE_ITEMS {
                        items.pop_back()
                    } else {
                        None
                    }
                };
                let Some(id) = extra else { break };
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
        let email = format!("memtest-{}-round{round}@example.com", self.run_id);
        expect(
            client
                .post(format!("{}/v1/users", self.base))
                .json(&json!({"email": email, "password": PASSWORD})),
            StatusCode::CREATED,
        )
        .await
        .with_context(|| format!("registering {email}"))?;
        let tokens = Arc::new(self.log_in(&client).await?);
        let mut requests = 1 + tokens.len() as u64;
        sent.fetch_add(requests, Ordering::Relaxed);

        let world = Arc::clone(self);
        let mix_client = client.clone();
        let mix_tokens = Arc::clone(&tokens);
        let mix_sent = Arc::clone(&sent);
        let report = load::run(plan, move |n| {
            let world = Arc::clone(&world);
            let client = mix_client.clone();
            let tokens = Arc::clone(&mix_tokens);
            let sent = Arc::clone(&mix_sent);
            async move {
                let ok = world.request(&client, &tokens, n).await;
                sent.fetch_add(1, Ordering::Relaxed);
                ok
            }
        })
        .await?;
        requests += report.requests;

        let trimmed = self.trim(&client, &tokens).await?;
        self.log_out(&client, &tokens).await?;
        requests += trimmed + tokens.len() as u64;
        sent.fetch_add(trimmed + tokens.len() as u64, Ordering::Relaxed);
        Ok(RoundLoad {
            requests,
            errors: report.errors,
            load: report,
        })
    }

    /// Sends request `n` of the mix; true when the answer is the expected one.
    async fn request(&self, client: &reqwest::Client, tokens: &[String], n: u64) -> bool {
        let u = ((n / 20) as usize) % self.users.len();
        let (user, token) = (&self.users[u], &tokens[u]);
        let base = &self.base;
        let auth = format!("Bearer {token}");
        let item_url = |id: i64| format!("{base}/v1/items/{id}");
        let standing = {
            let items = lock(&user.items);
            items
                .get((n as usize / 20) % BASE_ITEMS.min(items.len().max(1)))
                .copied()
        };
        let Some(standing) = standing else {
            return false;
        };
        let (request, status) = if n % 100 == 17 {
            (
                client
                    .post(format!("{base}/v1/items"))
                    .header(AUTHORIZATION, &auth)
                    .header(CONTENT_TYPE, "application/json")
                    .body(oversized_body()),
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
                    return match expect(request, StatusCode::CREATED).await {
                        Ok(item) => match item["id"].as_i64() {
                            Some(id) => {
                                lock(&user.items).push_back(id);
                                true
                            }
                            None => false,
                        },
                        Err(_) => false,
                    };
                }
                11 => (
                    client
                        .put(item_url(standing))
                        .header(AUTHORIZATION, &auth)
                        .json(&payload(n)),
                    StatusCode::OK,
                ),
                12..=15 => {
                    let extra = {
                        let mut items = lock(&user.items);
                        if items.len() > BASE_ITEMS {
                            items.pop_back()
                        } else {
                            None
                        }
                    };
                    match extra {
                        Some(id) => (
                            client.delete(item_url(id)).header(AUTHORIZATION, &auth),
                            StatusCode::NO_CONTENT,
                        ),
                        None => (
                            client.get(item_url(standing)).header(AUTHORIZATION, &auth),
                            StatusCode::OK,
                        ),
                    }
                }
                16 => (
                    client
                        .post(format!("{base}/v1/items"))
                        .header(AUTHORIZATION, &auth)
                        .header(CONTENT_TYPE, "application/json")
                        .body(r#"{"title": "broken", "data": [1, 2,, 3]"#),
                    StatusCode::BAD_REQUEST,
                ),
                17 => (
                    client
                        .get(format!("{base}/v1/me"))
                        .header(AUTHORIZATION, "Bearer not-a-real-token-0123456789"),
                    StatusCode::UNAUTHORIZED,
                ),
                18 => (
                    client
                        .post(format!("{base}/v1/items"))
                        .header(AUTHORIZATION, &auth)
                        .header(CONTENT_TYPE, "text/plain")
                        .body("title=plain"),
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ),
                _ => (
                    client
                        .post(format!("{base}/v1/items"))
                        .header(AUTHORIZATION, &auth)
                        .header(CONTENT_TYPE, "application/json")
                        .body(too_deep()),
                    StatusCode::BAD_REQUEST,
                ),
            }
        };
        match request.send().await {
            Ok(response) => {
                let got = response.status();
                response.bytes().await.is_ok() && got == status
            }
            Err(_) => false,
        }
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
