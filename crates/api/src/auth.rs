//! Authentication: password hashing, session tokens, login throttling, and the
//! extractor that turns a bearer token into a user.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::db::Db;
use crate::error::ApiError;

/// Argon2id with the OWASP-recommended parameters: m = 19 MiB, t = 2, p = 1.
fn argon2() -> Result<Argon2<'static>, argon2::Error> {
    Ok(Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(19 * 1024, 2, 1, None)?,
    ))
}

/// Hashes and verifies passwords on the blocking thread pool, at most `concurrency`
/// at a time, so a burst of logins queues here instead of allocating 19 MiB each
/// without bound or stalling the async workers.
#[derive(Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
    /// Hash verified when the email is unknown, so that a wrong email costs as much
    /// time as a wrong password and the timing does not reveal which accounts exist.
    dummy_hash: Arc<str>,
}

impl Passwords {
    pub fn new(concurrency: usize) -> anyhow::Result<Self> {
        let dummy_hash = hash_blocking("warden dummy password, never valid")?;
        Ok(Self {
            permits: Arc::new(Semaphore::new(concurrency)),
            dummy_hash: dummy_hash.into(),
        })
    }

    /// Hashes a password into a PHC string.
    pub async fn hash(&self, password: String) -> Result<String, ApiError> {
        let _permit = self.permits.acquire().await.map_err(anyhow::Error::from)?;
        tokio::task::spawn_blocking(move || hash_blocking(&password))
            .await
            .map_err(anyhow::Error::from)?
            .map_err(ApiError::Internal)
    }

    /// Verifies `password` against `hash`, or against the dummy hash when `hash` is
    /// `None` (unknown account; always false, same cost).
    pub async fn verify(&self, hash: Option<String>, password: String) -> Result<bool, ApiError> {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.to_string());
        let _permit = self.permits.acquire().await.map_err(anyhow::Error::from)?;
        let ok = tokio::task::spawn_blocking(move || -> anyhow::Result<bool> {
            let parsed =
                PasswordHash::new(&hash).map_err(|e| anyhow::anyhow!("stored hash: {e}"))?;
            let argon2 = argon2().map_err(|e| anyhow::anyhow!("argon2 params: {e}"))?;
            Ok(argon2.verify_password(password.as_bytes(), &parsed).is_ok())
        })
        .await
        .map_err(anyhow::Error::from)??;
        Ok(ok && known)
    }
}

fn hash_blocking(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let argon2 = argon2().map_err(|e| anyhow::anyhow!("argon2 params: {e}"))?;
    Ok(argon2
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing: {e}"))?
        .to_string())
}

/// A new session token: 256 random bits, URL-safe base64. Only [`token_digest`] of it
/// is stored.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The SHA-256 of a token, hex-encoded: the only form in which tokens are stored.
pub fn token_digest(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The caller, authenticated by `Authorization: Bearer TOKEN`.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user_id: i64,
    /// SHA-256 of the presented token (to revoke it).
    pub token_digest: String,
}

/// Recently seen sessions, so that most requests skip the session query.
///
/// An entry lives at most `ttl` (default 5 s) and never past the token's expiry.
/// Logging out removes the entry here at once; another instance of the API may
/// accept the revoked token until its own entry ages out, which is the price of
/// not querying the database on every request. A `ttl` of zero disables caching.
#[derive(Clone)]
pub struct SessionCache {
    entries: Option<moka::sync::Cache<String, (i64, i64)>>,
}

impl SessionCache {
    pub fn new(ttl: Duration) -> Self {
        let entries = (!ttl.is_zero()).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build()
        });
        Self { entries }
    }

    /// The user of an unexpired session, from the cache or the database.
    async fn user(&self, db: &Db, digest: &str) -> Result<Option<i64>, ApiError> {
        let now = crate::db::now_ms();
        if let Some((user_id, expires_at)) = self.entries.as_ref().and_then(|c| c.get(digest))
            && expires_at > now
        {
            return Ok(Some(user_id));
        }
        let found = db.session_user(digest).await?;
        if let (Some(cache), Some(entry)) = (&self.entries, found) {
            cache.insert(digest.to_owned(), entry);
        }
        Ok(found.map(|(user_id, _)| user_id))
    }

    /// Forgets a revoked session.
    pub fn revoke(&self, digest: &str) {
        if let Some(cache) = &self.entries {
            cache.invalidate(digest);
        }
    }
}

impl<S> FromRequestParts<S> for AuthUser
where
    S: Send + Sync,
    Db: FromRef<S>,
    SessionCache: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or(ApiError::Unauthorized(
                "missing `Authorization: Bearer TOKEN` header",
            ))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 128)
            .ok_or(ApiError::Unauthorized(
                "expected `Authorization: Bearer TOKEN`",
            ))?;
        let digest = token_digest(token);
        let db = Db::from_ref(state);
        match SessionCache::from_ref(state).user(&db, &digest).await? {
            Some(user_id) => Ok(Self {
                user_id,
                token_digest: digest,
            }),
            None => Err(ApiError::Unauthorized(
                "the token is invalid, expired or revoked; log in again",
            )),
        }
    }
}

/// Counts failed logins per key (an account or a client address) in a fixed window,
/// and refuses further attempts once a key reaches its limit until the window ends.
///
/// Hand-written because rate limiters such as `governor` count every attempt, while a
/// login throttle must count only failures (a user who logs in correctly is never
/// throttled) and must answer "how long until retry" for `Retry-After`.
pub struct LoginThrottle {
    window: Duration,
    per_account: u32,
    per_address: u32,
    failures: Mutex<HashMap<String, Window>>,
}

#[derive(Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

/// Entries above which expired windows are pruned, bounding memory.
const THROTTLE_PRUNE_AT: usize = 10_000;

impl LoginThrottle {
    pub fn new(window: Duration, per_account: u32, per_address: u32) -> Self {
        Self {
            window,
            per_account,
            per_address,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn keys(email: &str, address: std::net::IpAddr) -> [(String, u32); 2] {
        [
            (format!("account:{email}"), 0),
            (format!("address:{address}"), 1),
        ]
    }

    /// `Err` with the seconds to wait when the account or the address is throttled.
    pub fn check(&self, email: &str, address: std::net::IpAddr) -> Result<(), ApiError> {
        let now = Instant::now();
        let map = self
            .failures
            .lock()
            .map_err(|_| anyhow::anyhow!("throttle lock poisoned"))?;
        for (key, which) in Self::keys(email, address) {
            let limit = if which == 0 {
                self.per_account
            } else {
                self.per_address
            };
            if let Some(w) = map.get(&key) {
                let elapsed = now.duration_since(w.started);
                if w.failures >= limit && elapsed < self.window {
                    let wait = (self.window - elapsed).as_secs().max(1);
                    let what = if which == 0 {
                        "this account"
                    } else {
                        "this address"
                    };
                    return Err(ApiError::TooManyRequests {
                        detail: format!("too many failed logins for {what}; try again in {wait} s"),
                        retry_after_secs: wait,
                    });
                }
            }
        }
        Ok(())
    }

    /// Records a failed login for the account and the address.
    pub fn record_failure(&self, email: &str, address: std::net::IpAddr) {
        let now = Instant::now();
        let Ok(mut map) = self.failures.lock() else {
            return;
        };
        if map.len() >= THROTTLE_PRUNE_AT {
            let window = self.window;
            map.retain(|_, w| now.duration_since(w.started) < window);
        }
        for (key, _) in Self::keys(email, address) {
            let w = map.entry(key).or_insert(Window {
                started: now,
                failures: 0,
            });
            if now.duration_since(w.started) >= self.window {
                *w = Window {
                    started: now,
                    failures: 0,
                };
            }
            w.failures += 1;
        }
    }

    /// Forgets the account's failures after a successful login.
    pub fn record_success(&self, email: &str) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(&format!("account:{email}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bits_and_digests_are_sha256() {
        let token = new_token();
        assert_eq!(URL_SAFE_NO_PAD.decode(&token).unwrap().len(), 32);
        assert_ne!(token, new_token());
        assert_eq!(
            token_digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn throttle_counts_failures_per_account_and_address() {
        let t = LoginThrottle::new(Duration::from_secs(60), 2, 3);
        let a: std::net::IpAddr = [127, 0, 0, 1].into();
        t.record_failure("x@example.com", a);
        assert!(t.check("x@example.com", a).is_ok());
        t.record_failure("x@example.com", a);
        assert!(matches!(
            t.check("x@example.com", a),
            Err(ApiError::TooManyRequests { .. })
        ));
        t.record_failure("y@example.com", a);
        assert!(matches!(
            t.check("z@example.com", a),
            Err(ApiError::TooManyRequests { .. })
        ));
        let b: std::net::IpAddr = [127, 0, 0, 2].into();
        assert!(t.check("z@example.com", b).is_ok());
    }

    #[tokio::test]
    async fn dummy_verification_never_succeeds() {
        let p = Passwords::new(1).unwrap();
        assert!(
            !p.verify(None, "warden dummy password, never valid".into())
                .await
                .unwrap()
        );
        let hash = p.hash("correct horse battery".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(
            p.verify(Some(hash.clone()), "correct horse battery".into())
                .await
                .unwrap()
        );
        assert!(
            !p.verify(Some(hash), "wrong horse battery".into())
                .await
                .unwrap()
        );
    }
}
