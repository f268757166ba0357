//! Authentication: password hashing, session tokens, login throttling, and the
//! extractor that turns a bearer token into a user.

use std::net::IpAddr;
use std::sync::Arc;
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

/// Throttles password guessing without letting anyone lock another user out.
///
/// Failed logins are counted in fixed windows (default 15 minutes from a key's first
/// failure) under three keys, following the OWASP Authentication Cheat Sheet
/// (throttle per account *and* source; do not lock the account itself):
///
/// - **one account from one client address**: at `per_pair` failures that address
///   gets 429 for that account, even with the right password (that is what stops
///   the guessing), while the owner logs in from anywhere else;
/// - **one client address, any accounts**: at `per_address` failures it gets 429
///   for every login (stops one source spraying many accounts);
/// - **one account, all addresses**: at `account_under_attack` failures the account
///   is under attack from many addresses, and an address that has already failed on
///   it in its window is refused until that window ends. A guesser with many
///   addresses gets one guess per address; an address that has not failed on it
///   (its owner, typically) still logs in at once.
///
/// A correct password from an address that has not itself been failing is therefore
/// never refused. Only failures count (a user who logs in is never throttled), and a
/// success forgets that address's failures on that account. Accounts are keyed by a
/// hash of the email and IPv6 clients by their /64 network (what one host usually
/// gets), so every entry is small, and at most [`THROTTLE_CAPACITY`] are kept.
///
/// Hand-written because rate limiters such as `governor` count every attempt, while a
/// login throttle must count only failures and must answer "how long until retry"
/// for `Retry-After`.
pub struct LoginThrottle {
    window: Duration,
    per_pair: u32,
    per_address: u32,
    account_under_attack: u32,
    failures: moka::sync::Cache<ThrottleKey, Window>,
}

/// What failures are counted against.
#[derive(Clone, PartialEq, Eq, Hash)]
enum ThrottleKey {
    Pair([u8; 32], IpAddr),
    Address(IpAddr),
    Account([u8; 32]),
}

#[derive(Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

/// Throttle entries kept at most (about 100 bytes each); beyond it the least useful
/// are evicted, so memory stays bounded whatever the traffic.
pub const THROTTLE_CAPACITY: u64 = 100_000;

impl LoginThrottle {
    pub fn new(
        window: Duration,
        per_pair: u32,
        per_address: u32,
        account_under_attack: u32,
    ) -> Self {
        Self {
            window,
            per_pair,
            per_address,
            account_under_attack,
            failures: moka::sync::Cache::builder()
                .max_capacity(THROTTLE_CAPACITY)
                // Windows are judged by their start; this only drops dead ones.
                .time_to_live(window)
                .build(),
        }
    }

    fn keys(email: &str, address: IpAddr) -> [ThrottleKey; 3] {
        let account: [u8; 32] = Sha256::digest(email.as_bytes()).into();
        let client = client_key(address);
        [
            ThrottleKey::Pair(account, client),
            ThrottleKey::Address(client),
            ThrottleKey::Account(account),
        ]
    }

    /// The failures counted under `key` in its current window, and the time left in it.
    fn current(&self, key: &ThrottleKey, now: Instant) -> Option<(u32, Duration)> {
        let w = self.failures.get(key)?;
        let left = self.window.checked_sub(now.duration_since(w.started))?;
        (!left.is_zero()).then_some((w.failures, left))
    }

    /// `Err` (429) with the seconds to wait when `address` may not try `email` now.
    pub fn check(&self, email: &str, address: IpAddr) -> Result<(), ApiError> {
        let now = Instant::now();
        let [pair, by_address, account] = Self::keys(email, address);
        let refuse = |what: &str, left: Duration| {
            let wait = left.as_secs().max(1);
            Err(ApiError::TooManyRequests {
                detail: format!("too many failed logins {what}; try again in {wait} s"),
                retry_after_secs: wait,
            })
        };
        if let Some((n, left)) = self.current(&by_address, now)
            && n >= self.per_address
        {
            return refuse("from your address", left);
        }
        let Some((n, pair_left)) = self.current(&pair, now) else {
            return Ok(());
        };
        if n >= self.per_pair {
            return refuse("for this account from your address", pair_left);
        }
        if let Some((total, account_left)) = self.current(&account, now)
            && total >= self.account_under_attack
        {
            return refuse(
                "for this account from many addresses, one of them yours",
                pair_left.min(account_left),
            );
        }
        Ok(())
    }

    /// Records a failed login for the account from the address.
    pub fn record_failure(&self, email: &str, address: IpAddr) {
        let now = Instant::now();
        for key in Self::keys(email, address) {
            self.failures.entry(key).and_upsert_with(|entry| {
                match entry.map(moka::Entry::into_value) {
                    Some(w) if now.duration_since(w.started) < self.window => Window {
                        started: w.started,
                        failures: w.failures.saturating_add(1),
                    },
                    _ => Window {
                        started: now,
                        failures: 1,
                    },
                }
            });
        }
    }

    /// Forgets the address's failures on the account after it logged in. The
    /// account's failures from elsewhere and the address's on other accounts stay.
    pub fn record_success(&self, email: &str, address: IpAddr) {
        let [pair, ..] = Self::keys(email, address);
        self.failures.invalidate(&pair);
    }
}

/// The throttle's name for a client: an IPv4 address, or an IPv6 /64 network, since
/// one host usually holds a whole /64 and could otherwise change address at will.
fn client_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(network.into())
        }
        v4 => v4,
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
    fn throttle_refuses_the_pair_and_the_address_not_the_account() {
        let t = LoginThrottle::new(Duration::from_secs(60), 2, 3, 100);
        let a: IpAddr = [127, 0, 0, 2].into();
        let b: IpAddr = [127, 0, 0, 3].into();
        t.record_failure("x@example.com", a);
        assert!(t.check("x@example.com", a).is_ok());
        t.record_failure("x@example.com", a);
        let refused = t.check("x@example.com", a).unwrap_err();
        assert!(
            matches!(refused, ApiError::TooManyRequests { ref detail, retry_after_secs: 1..=60 }
                if detail.contains("for this account from your address")),
            "{refused:?}"
        );
        // The account itself is not locked: another address may try it.
        assert!(t.check("x@example.com", b).is_ok());
        // The address is refused everywhere at its own limit.
        assert!(t.check("y@example.com", a).is_ok());
        t.record_failure("y@example.com", a);
        let refused = t.check("z@example.com", a).unwrap_err();
        assert!(
            matches!(refused, ApiError::TooManyRequests { ref detail, .. } if detail.contains("from your address")),
            "{refused:?}"
        );
        assert!(t.check("z@example.com", b).is_ok());
        // A success forgets only that address's failures on that account.
        t.record_failure("w@example.com", b);
        t.record_success("w@example.com", b);
        t.record_failure("w@example.com", b);
        assert!(t.check("w@example.com", b).is_ok());
    }

    #[test]
    fn an_account_under_attack_refuses_addresses_that_failed_on_it_only() {
        let t = LoginThrottle::new(Duration::from_secs(60), 5, 100, 4);
        let attackers: Vec<IpAddr> = (10..14).map(|n| IpAddr::from([10, 0, 0, n])).collect();
        let owner: IpAddr = [192, 0, 2, 1].into();
        for a in &attackers[..3] {
            t.record_failure("x@example.com", *a);
            assert!(t.check("x@example.com", *a).is_ok(), "not under attack yet");
        }
        t.record_failure("x@example.com", attackers[3]);
        for a in &attackers {
            let refused = t.check("x@example.com", *a).unwrap_err();
            assert!(
                matches!(refused, ApiError::TooManyRequests { ref detail, .. } if detail.contains("many addresses")),
                "{refused:?}"
            );
        }
        assert!(
            t.check("x@example.com", owner).is_ok(),
            "a clean address still logs in"
        );
        assert!(
            t.check("y@example.com", attackers[0]).is_ok(),
            "other accounts are unaffected"
        );
    }

    #[test]
    fn windows_end() {
        let t = LoginThrottle::new(Duration::from_millis(200), 1, 100, 100);
        let a: IpAddr = [127, 0, 0, 2].into();
        t.record_failure("x@example.com", a);
        assert!(t.check("x@example.com", a).is_err());
        std::thread::sleep(Duration::from_millis(250));
        assert!(t.check("x@example.com", a).is_ok());
        t.record_failure("x@example.com", a);
        assert!(t.check("x@example.com", a).is_err(), "a new window starts");
    }

    #[test]
    fn ipv6_clients_are_their_slash_64() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(client_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(client_key(ip("::ffff:198.51.100.7")), ip("198.51.100.7"));
        let t = LoginThrottle::new(Duration::from_secs(60), 1, 100, 100);
        t.record_failure("x@example.com", ip("2001:db8:1:2::1"));
        assert!(t.check("x@example.com", ip("2001:db8:1:2::ffff")).is_err());
        assert!(t.check("x@example.com", ip("2001:db8:1:3::1")).is_ok());
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
