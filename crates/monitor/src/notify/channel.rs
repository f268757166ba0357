//! Notifier configuration, checked once into a [`Channel`] that can make one attempt.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use lettre::message::Mailbox;
use reqwest::Url;
use serde::{Deserialize, Serialize};

use super::email::Email;
use super::slack::Slack;
use super::webhook::Webhook;
use super::{NETWORK_TIMEOUT, Notification};

/// One entry of the `[[notifiers]]` array of Warden's TOML config.
///
/// `Debug` is written by hand: it shows no secret, and no Slack URL (its path is the
/// token). `Serialize` writes the config back as it was read, secrets included: it is
/// for writing config files, not for logs or API answers.
#[derive(Clone, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ChannelConfig {
    /// POSTs the Alertmanager webhook JSON, signed with HMAC-SHA256 when `secret` is
    /// set (see the [module docs](super#webhook-signatures)).
    Webhook {
        name: String,
        url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret: Option<String>,
    },
    /// POSTs a message to a Slack-compatible incoming webhook.
    Slack { name: String, url: String },
    /// Sends a plain-text email over SMTP.
    Email {
        name: String,
        smtp_host: String,
        smtp_port: u16,
        tls: SmtpTls,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        username: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password: Option<String>,
        from: String,
        to: Vec<String>,
    },
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text; credentials are only allowed to a loopback server.
    None,
    /// Connect in plain text, then upgrade with STARTTLS (required; usually port 587).
    Starttls,
    /// TLS from the first byte (usually port 465).
    Tls,
}

impl ChannelConfig {
    /// The notifier's name, as in [`Delivery::notifier`](super::Delivery::notifier).
    #[must_use]
    pub fn name(&self) -> &str {
        match self {
            Self::Webhook { name, .. } | Self::Slack { name, .. } | Self::Email { name, .. } => {
                name
            }
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Webhook { .. } => "webhook",
            Self::Slack { .. } => "slack",
            Self::Email { .. } => "email",
        }
    }
}

const REDACTED: &str = "<redacted>";

impl fmt::Debug for ChannelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |present: bool| if present { Some(REDACTED) } else { None };
        match self {
            Self::Webhook { name, url, secret } => f
                .debug_struct("Webhook")
                .field("name", name)
                .field("url", &displayable_url(url))
                .field("secret", &redacted(secret.is_some()))
                .finish(),
            Self::Slack { name, url: _ } => f
                .debug_struct("Slack")
                .field("name", name)
                .field("url", &REDACTED)
                .finish(),
            Self::Email {
                name,
                smtp_host,
                smtp_port,
                tls,
                username,
                password,
                from,
                to,
            } => f
                .debug_struct("Email")
                .field("name", name)
                .field("smtp_host", smtp_host)
                .field("smtp_port", smtp_port)
                .field("tls", tls)
                .field("username", username)
                .field("password", &redacted(password.is_some()))
                .field("from", from)
                .field("to", to)
                .finish(),
        }
    }
}

/// A URL fit for logs: scheme, host, port and path; no user, password, query or
/// fragment, where tokens hide. A string that is not a URL shows as `<invalid URL>`.
pub(super) fn displayable_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) => {
            // Only fails for URLs that cannot have a user or password: nothing to hide.
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => "<invalid URL>".to_owned(),
    }
}

/// A notifier checked and ready to send.
pub(super) struct Channel {
    pub(super) name: String,
    transport: Transport,
}

enum Transport {
    Webhook(Webhook),
    Slack(Slack),
    Email(Box<Email>),
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.transport {
            Transport::Webhook(_) => "webhook",
            Transport::Slack(_) => "slack",
            Transport::Email(_) => "email",
        };
        f.debug_struct("Channel")
            .field("name", &self.name)
            .field("type", &kind)
            .finish_non_exhaustive()
    }
}

impl Channel {
    /// Makes one attempt to deliver `n`; `Ok` holds the receiver's HTTP status, if any.
    pub(super) async fn attempt(
        &self,
        http: &reqwest::Client,
        n: &Notification,
    ) -> Result<Option<u16>, AttemptError> {
        let attempt = async {
            match &self.transport {
                Transport::Webhook(w) => w.send(http, &self.name, n).await.map(Some),
                Transport::Slack(s) => s.send(http, n).await.map(Some),
                Transport::Email(e) => e.send(n).await.map(|()| None),
            }
        };
        // reqwest and lettre have their own timeouts; this one bounds a whole SMTP
        // session too.
        tokio::time::timeout(NETWORK_TIMEOUT, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(AttemptError::retryable(format!(
                    "timed out after {}",
                    humantime::format_duration(NETWORK_TIMEOUT)
                )))
            })
    }
}

/// Checks every notifier (names unique, every field well-formed) and builds them.
pub(super) fn build_channels(configs: Vec<ChannelConfig>) -> anyhow::Result<Vec<Channel>> {
    let mut names = HashSet::new();
    let mut channels = Vec::with_capacity(configs.len());
    for (i, config) in configs.into_iter().enumerate() {
        let name = config.name().to_owned();
        let kind = config.kind();
        let at = if name.trim().is_empty() {
            format!("notifiers[{i}] ({kind})")
        } else {
            format!("notifier {name:?} ({kind})")
        };
        if name.trim().is_empty() {
            bail!("{at}: `name` is empty; give every notifier a name");
        }
        if !names.insert(name.clone()) {
            bail!("{at}: `name` is used by another notifier; names must be unique");
        }
        let transport = build_transport(config).with_context(|| at.clone())?;
        channels.push(Channel { name, transport });
    }
    Ok(channels)
}

fn build_transport(config: ChannelConfig) -> anyhow::Result<Transport> {
    Ok(match config {
        ChannelConfig::Webhook { url, secret, .. } => {
            let url = http_url(&url).context("`url`")?;
            if secret.as_deref().is_some_and(|s| s.trim().is_empty()) {
                bail!("`secret` is empty; remove the key to send unsigned requests");
            }
            Transport::Webhook(Webhook::new(url, secret.map(Secret)))
        }
        ChannelConfig::Slack { url, .. } => {
            let url = http_url(&url).context("`url`")?;
            Transport::Slack(Slack::new(Secret(url)))
        }
        ChannelConfig::Email {
            smtp_host,
            smtp_port,
            tls,
            username,
            password,
            from,
            to,
            ..
        } => {
            if smtp_host.trim().is_empty() {
                bail!("`smtp_host` is empty");
            }
            if smtp_port == 0 {
                bail!("`smtp_port` is 0");
            }
            let from: Mailbox = from
                .parse()
                .map_err(|e| anyhow::anyhow!("`from`: {from:?} is not an email address ({e})"))?;
            if to.is_empty() {
                bail!("`to` is empty; list at least one recipient");
            }
            let to = to
                .iter()
                .enumerate()
                .map(|(i, addr)| {
                    addr.parse::<Mailbox>().map_err(|e| {
                        anyhow::anyhow!("`to[{i}]`: {addr:?} is not an email address ({e})")
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let credentials = match (username, password) {
                (Some(user), Some(password)) => Some((user, Secret(password))),
                (None, None) => None,
                (Some(_), None) => bail!("`username` is set but `password` is not"),
                (None, Some(_)) => bail!("`password` is set but `username` is not"),
            };
            if credentials.is_some() && tls == SmtpTls::None && !is_loopback(&smtp_host) {
                bail!(
                    "`tls` is \"none\" with credentials for {smtp_host}: the password would \
                     cross the network in clear text; use \"starttls\" or \"tls\""
                );
            }
            let email =
                Email::new(&smtp_host, smtp_port, tls, credentials, from, to).context("`tls`")?;
            Transport::Email(Box::new(email))
        }
    })
}

/// Parses an absolute http(s) URL. The error never repeats the value: a Slack URL
/// is a secret, a webhook URL may hold a token.
fn http_url(url: &str) -> anyhow::Result<Url> {
    let parsed = Url::parse(url.trim()).map_err(|e| anyhow::anyhow!("not a URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        bail!(
            "not an http:// or https:// URL (the scheme is {:?})",
            parsed.scheme()
        );
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        bail!("the URL has no host");
    }
    Ok(parsed)
}

pub(super) fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A value that must not be shown: `Debug` prints `<redacted>`.
pub(super) struct Secret<T>(pub(super) T);

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Why one attempt failed, free of secrets, and whether another attempt can help.
#[derive(Debug)]
pub(super) struct AttemptError {
    pub(super) message: String,
    pub(super) http_status: Option<u16>,
    /// `None`: final. `Some(None)`: retry after the policy's backoff.
    /// `Some(Some(d))`: the receiver asked to wait `d` (`Retry-After`).
    pub(super) retry: Option<Option<Duration>>,
}

impl AttemptError {
    pub(super) fn retryable(message: String) -> Self {
        Self {
            message,
            http_status: None,
            retry: Some(None),
        }
    }

    pub(super) fn fatal(message: String) -> Self {
        Self {
            message,
            http_status: None,
            retry: None,
        }
    }
}

/// POSTs a JSON body and classifies the answer: 2xx is delivered; 429 and 5xx are worth
/// a retry (after `Retry-After` when given); anything else is final.
pub(super) async fn post_json(
    request: reqwest::RequestBuilder,
    body: Vec<u8>,
) -> Result<u16, AttemptError> {
    let response = request
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| AttemptError::retryable(describe_reqwest_error(e)))?;
    let status = response.status();
    if status.is_success() {
        return Ok(status.as_u16());
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    // A short excerpt of what the receiver said helps whoever reads the delivery log
    // ("invalid_token", "no_service").
    let excerpt = tokio::time::timeout(Duration::from_secs(2), response.text())
        .await
        .ok()
        .and_then(Result::ok)
        .map(|text| {
            let one_line: String = text
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            super::truncate(one_line.trim(), 200)
        })
        .filter(|s| !s.is_empty());
    let mut message = format!("HTTP {status}");
    if let Some(excerpt) = excerpt {
        message = format!("{message}: {excerpt}");
    }
    let retry = (status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS)
        .then_some(retry_after);
    Err(AttemptError {
        message,
        http_status: Some(status.as_u16()),
        retry,
    })
}

/// reqwest's error and its causes on one line, without the URL (a Slack URL is a
/// secret, a webhook URL may hold a token).
fn describe_reqwest_error(e: reqwest::Error) -> String {
    if e.is_timeout() {
        return format!(
            "timed out after {}",
            humantime::format_duration(NETWORK_TIMEOUT)
        );
    }
    let e = e.without_url();
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        source = cause.source();
    }
    message
}

/// `Retry-After` as seconds (`120`) or an HTTP date (`Wed, 21 Oct 2015 07:28:00 GMT`).
pub(super) fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at =
        time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    let wait = at - time::OffsetDateTime::now_utc();
    Some(wait.try_into().unwrap_or(Duration::ZERO))
}
