//! Who the client is: the TCP peer, or the address a trusted reverse proxy vouches for.
//!
//! Behind `warden up`'s front proxy every connection comes from the proxy, so a
//! throttle keyed by the TCP peer would count every user as one client (about 20
//! wrong passwords from anyone once refused everyone's logins). The proxy therefore
//! tells the instance the client's address in `X-Forwarded-For`, and proves that the
//! request went through it with [`PROXY_SECRET_HEADER`], holding a secret it shares
//! only with the instances it starts ([`PROXY_SECRET_ENV`], in their environment:
//! never on a command line, which any local user can read in `/proc`).
//!
//! The forwarded address is believed only when that header matches the configured
//! secret (compared in constant time). Anything else (no secret configured, no
//! header, a wrong one, an unreadable address) is the TCP peer, whatever
//! `X-Forwarded-For` says: a client talking to the API directly cannot choose the
//! address it is throttled under.
//!
//! Another reverse proxy can play the same role, e.g. nginx with
//! `proxy_set_header X-Forwarded-For $remote_addr;` and
//! `proxy_set_header X-Warden-Proxy-Secret "…";`. The last address in the header is
//! the one used: it is the one the trusted proxy saw connect, whereas earlier
//! entries were written by whoever sent the request.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use subtle::ConstantTimeEq as _;

use crate::error::ApiError;

/// The request header in which a trusted proxy presents the shared secret. Warden's
/// front proxy (`warden_deploy::proxy`) sets it under the same name and removes any
/// copy a client sent.
pub const PROXY_SECRET_HEADER: &str = "x-warden-proxy-secret";

/// The environment variable holding the shared secret. Read from the environment
/// only: there is deliberately no flag and no config-file key for it.
pub const PROXY_SECRET_ENV: &str = "WARDEN_PROXY_SECRET";

/// The header naming the client's address.
const FORWARDED_FOR: &str = "x-forwarded-for";

/// Fewest characters a proxy secret may have: it is the only thing that separates a
/// forged `X-Forwarded-For` from a believed one, so it must not be guessable.
pub const MIN_SECRET_CHARS: usize = 32;

/// The secret shared with the trusted proxy. Its `Debug` form never shows it, so
/// printing the settings cannot leak it.
#[derive(Clone)]
pub struct ProxySecret(Arc<str>);

impl ProxySecret {
    /// Checks a secret: at least [`MIN_SECRET_CHARS`] visible ASCII characters (it
    /// travels in a header).
    pub fn parse(value: &str) -> Result<Self, String> {
        if value.len() < MIN_SECRET_CHARS {
            return Err(format!(
                "must be at least {MIN_SECRET_CHARS} characters long"
            ));
        }
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must be visible ASCII characters only (it is sent in a header)".into());
        }
        Ok(Self(value.into()))
    }

    fn matches(&self, presented: &[u8]) -> bool {
        self.0.as_bytes().ct_eq(presented).into()
    }
}

impl std::fmt::Debug for ProxySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProxySecret(<redacted>)")
    }
}

/// Decides who the client of a request is; `None` believes no proxy.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxy(pub Option<ProxySecret>);

impl TrustedProxy {
    /// The client's address: the last `X-Forwarded-For` address when the request
    /// carries the proxy's secret, else `peer`. IPv4-mapped IPv6 addresses are
    /// reported as IPv4.
    pub fn client(&self, headers: &HeaderMap, peer: IpAddr) -> IpAddr {
        self.forwarded(headers).unwrap_or(peer).to_canonical()
    }

    fn forwarded(&self, headers: &HeaderMap) -> Option<IpAddr> {
        let secret = self.0.as_ref()?;
        let presented = headers.get(PROXY_SECRET_HEADER)?;
        if !secret.matches(presented.as_bytes()) {
            tracing::debug!("a request presented a wrong proxy secret; using its TCP peer");
            return None;
        }
        let last = headers.get_all(FORWARDED_FOR).iter().next_back()?;
        let entry = last.to_str().ok()?.rsplit(',').next()?.trim();
        entry
            .parse::<IpAddr>()
            .ok()
            .or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
    }
}

/// The client's address, as [`TrustedProxy::client`] decides it.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

impl<S> FromRequestParts<S> for ClientAddr
where
    S: Send + Sync,
    TrustedProxy: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
            .ok_or_else(|| {
                ApiError::Internal(anyhow::anyhow!(
                    "no peer address: the router is served without connect info"
                ))
            })?;
        Ok(Self(
            TrustedProxy::from_ref(state).client(&parts.headers, peer),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn the_forwarded_address_is_believed_only_with_the_secret() {
        let peer: IpAddr = [127, 0, 0, 1].into();
        let trusted = TrustedProxy(Some(ProxySecret::parse(SECRET).unwrap()));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();

        let forged = headers(&[("x-forwarded-for", "198.51.100.7")]);
        assert_eq!(trusted.client(&forged, peer), peer);
        let wrong = headers(&[
            ("x-forwarded-for", "198.51.100.7"),
            ("x-warden-proxy-secret", "0123456789abcdef0123456789abcdeX"),
        ]);
        assert_eq!(trusted.client(&wrong, peer), peer);
        let shorter = headers(&[
            ("x-forwarded-for", "198.51.100.7"),
            ("x-warden-proxy-secret", "0123456789abcdef"),
        ]);
        assert_eq!(trusted.client(&shorter, peer), peer);

        let right = headers(&[
            ("x-forwarded-for", "198.51.100.7, 203.0.113.9"),
            ("x-warden-proxy-secret", SECRET),
        ]);
        assert_eq!(trusted.client(&right, peer), ip("203.0.113.9"));
        assert_eq!(TrustedProxy(None).client(&right, peer), peer);

        let mapped = headers(&[
            ("x-forwarded-for", "::ffff:203.0.113.9"),
            ("x-warden-proxy-secret", SECRET),
        ]);
        assert_eq!(trusted.client(&mapped, peer), ip("203.0.113.9"));
        let with_port = headers(&[
            ("x-forwarded-for", "[2001:db8::1]:443"),
            ("x-warden-proxy-secret", SECRET),
        ]);
        assert_eq!(trusted.client(&with_port, peer), ip("2001:db8::1"));
        for unreadable in ["", "unknown", "198.51.100.7,"] {
            let mut h = headers(&[("x-warden-proxy-secret", SECRET)]);
            h.insert("x-forwarded-for", HeaderValue::from_static(unreadable));
            assert_eq!(trusted.client(&h, peer), peer, "{unreadable:?}");
        }
        let missing = headers(&[("x-warden-proxy-secret", SECRET)]);
        assert_eq!(trusted.client(&missing, peer), peer);
    }

    #[test]
    fn secrets_are_long_printable_and_never_printed() {
        assert!(ProxySecret::parse("short").is_err());
        assert!(ProxySecret::parse(&format!("{SECRET} with space")).is_err());
        let secret = ProxySecret::parse(SECRET).unwrap();
        let shown = format!("{secret:?} {:?}", TrustedProxy(Some(secret.clone())));
        assert!(!shown.contains(SECRET), "{shown}");
    }
}
