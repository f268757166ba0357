//! Slack-compatible incoming webhooks: `{"text": ..., "blocks": [...]}`.
//!
//! `text` is the one-line fallback shown in notifications and by chat systems that
//! ignore blocks (Mattermost, Rocket.Chat); the blocks carry the summary, description,
//! labels and dashboard link in mrkdwn. The status is a word (`FIRING`, `RESOLVED`),
//! not an emoji, so it reads the same everywhere.

use reqwest::Url;
use serde_json::{Value, json};

use super::channel::{AttemptError, Secret, post_json};
use super::{Notification, human_time, truncate};

/// Slack's limits: header text 150 characters, section text 3000, field text 2000.
const HEADER_MAX: usize = 150;
const SECTION_MAX: usize = 3000;
const FIELD_MAX: usize = 2000;

pub(super) struct Slack {
    /// The path of a Slack URL is its token.
    url: Secret<Url>,
}

impl Slack {
    pub(super) fn new(url: Secret<Url>) -> Self {
        Self { url }
    }

    pub(super) async fn send(
        &self,
        http: &reqwest::Client,
        n: &Notification,
    ) -> Result<u16, AttemptError> {
        let body = serde_json::to_vec(&message(n))
            .map_err(|e| AttemptError::fatal(format!("cannot encode the message: {e}")))?;
        post_json(http.post(self.url.0.clone()), body).await
    }
}

/// The message for `n`.
pub(super) fn message(n: &Notification) -> Value {
    let status = n.status.shout();
    let text = format!("[{status}] {} ({}): {}", n.alert, n.severity, n.summary);

    let mut fields = vec![
        field("Status", status),
        field("Severity", &n.severity),
        field("Started", &human_time(n.starts_at_ms)),
    ];
    if let Some(ends_at_ms) = n.ends_at_ms {
        fields.push(field("Ended", &human_time(ends_at_ms)));
    }

    let mut blocks = vec![
        json!({
            "type": "header",
            "text": { "type": "plain_text", "text": truncate(&format!("[{status}] {}", n.alert), HEADER_MAX) },
        }),
        section(&format!(
            "*{}*\n{}",
            escape(&n.summary),
            escape(&n.description)
        )),
        json!({ "type": "section", "fields": fields }),
    ];
    if !n.labels.is_empty() {
        let labels: Vec<String> = n
            .labels
            .iter()
            .map(|(k, v)| format!("• `{}`: {}", escape(k), escape(v)))
            .collect();
        blocks.push(section(&format!("*Labels*\n{}", labels.join("\n"))));
    }
    if let Some(url) = &n.dashboard_url {
        blocks.push(section(&format!("<{}|Open the dashboard>", escape(url))));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{ "type": "mrkdwn", "text": format!("Fingerprint `{}`", escape(&n.fingerprint)) }],
    }));

    json!({ "text": text, "blocks": blocks })
}

fn section(mrkdwn: &str) -> Value {
    json!({ "type": "section", "text": { "type": "mrkdwn", "text": truncate(mrkdwn, SECTION_MAX) } })
}

fn field(name: &str, value: &str) -> Value {
    json!({ "type": "mrkdwn", "text": truncate(&format!("*{name}*\n{}", escape(value)), FIELD_MAX) })
}

/// Slack's mrkdwn escaping: `&`, `<` and `>` are control characters.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
