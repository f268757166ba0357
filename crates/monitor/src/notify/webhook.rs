//! Webhooks: the Alertmanager webhook JSON, signed (see the
//! [module docs](super#webhook-signatures) for the scheme).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use reqwest::Url;
use serde_json::{Value, json};
use sha2::Sha256;

use super::channel::{AttemptError, Secret, post_json};
use super::{AlertStatus, Notification, alert_labels, rfc3339_ms};

/// The request header that carries the signature.
pub const SIGNATURE_HEADER: &str = "X-Warden-Signature";

/// Alertmanager's "no time" (Go's zero `time.Time`), used for `endsAt` while firing.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

type HmacSha256 = Hmac<Sha256>;

pub(super) struct Webhook {
    url: Url,
    secret: Option<Secret<String>>,
}

impl Webhook {
    pub(super) fn new(url: Url, secret: Option<Secret<String>>) -> Self {
        if secret.is_none() {
            tracing::warn!(
                url = %super::channel::displayable_url(url.as_str()),
                "webhook notifier has no secret: its requests are unsigned"
            );
        }
        Self { url, secret }
    }

    pub(super) async fn send(
        &self,
        http: &reqwest::Client,
        receiver: &str,
        n: &Notification,
    ) -> Result<u16, AttemptError> {
        let body = serde_json::to_vec(&payload(receiver, n))
            .map_err(|e| AttemptError::fatal(format!("cannot encode the payload: {e}")))?;
        let mut request = http.post(self.url.clone());
        if let Some(Secret(secret)) = &self.secret {
            // Signed at each attempt, so a retry after a long backoff is still fresh.
            request = request.header(
                SIGNATURE_HEADER,
                signature_header(secret, &body, SystemTime::now()),
            );
        }
        post_json(request, body).await
    }
}

/// The body Alertmanager would send for this one alert (webhook `version` 4).
fn payload(receiver: &str, n: &Notification) -> Value {
    let labels = alert_labels(n);
    let annotations = json!({ "summary": n.summary, "description": n.description });
    let ends_at = match (n.status, n.ends_at_ms) {
        (_, Some(ms)) => rfc3339_ms(ms),
        (AlertStatus::Firing, None) => ZERO_TIME.to_owned(),
        (AlertStatus::Resolved, None) => rfc3339_ms(super::now_ms()),
    };
    let link = n.dashboard_url.clone().unwrap_or_default();
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname={:?}, fingerprint={:?}}}", n.alert, n.fingerprint),
        "truncatedAlerts": 0,
        "status": n.status,
        "receiver": receiver,
        "groupLabels": { "alertname": n.alert },
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": link,
        "alerts": [{
            "status": n.status,
            "labels": labels,
            "annotations": annotations,
            "startsAt": rfc3339_ms(n.starts_at_ms),
            "endsAt": ends_at,
            "generatorURL": link,
            "fingerprint": n.fingerprint,
        }],
    })
}

/// The value of [`SIGNATURE_HEADER`] for `body` sent at `at`:
/// `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
#[must_use]
pub fn signature_header(secret: &str, body: &[u8], at: SystemTime) -> String {
    let t = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mac = hex::encode(mac(secret, t, body).finalize().into_bytes());
    format!("t={t},v1={mac}")
}

/// Checks a [`SIGNATURE_HEADER`] value against the raw request `body`: true when one
/// of its `v1` signatures is the HMAC of `"<t>.<body>"` under `secret` and `t` is
/// within `tolerance` of `now` (either side). Comparison is constant-time. Several `v1`
/// entries are allowed, so a sender can sign with an old and a new secret while the
/// secret is rotated.
#[must_use]
pub fn verify_signature(
    secret: &str,
    header: &str,
    body: &[u8],
    now: SystemTime,
    tolerance: Duration,
) -> bool {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<u64>().ok(),
            Some(("v1", sig)) => signatures.extend(hex::decode(sig).ok()),
            _ => {}
        }
    }
    let Some(t) = timestamp else {
        return false;
    };
    let Some(now) = now.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs()) else {
        return false;
    };
    if now.abs_diff(t) > tolerance.as_secs() {
        return false;
    }
    signatures
        .iter()
        .any(|sig| mac(secret, t, body).verify_slice(sig).is_ok())
}

fn mac(secret: &str, t: u64, body: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}
