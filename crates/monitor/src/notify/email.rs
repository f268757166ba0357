//! Email over SMTP: a plain-text message that reads well in any client and on a phone.

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};

use super::channel::{AttemptError, Secret};
use super::{NETWORK_TIMEOUT, Notification, SmtpTls, human_time, truncate};

/// An SMTP transport to `host:port`, protected as `tls` says, logging in with
/// `credentials` (user, password) when given; each session is bounded by
/// [`NETWORK_TIMEOUT`]. Credentials over plain text are refused unless the server is
/// on loopback.
///
/// # Errors
/// Clear-text credentials to another machine, or TLS parameters that cannot be built.
pub fn smtp_transport(
    host: &str,
    port: u16,
    tls: SmtpTls,
    credentials: Option<(String, String)>,
) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
    if credentials.is_some() && tls == SmtpTls::None && !super::channel::is_loopback(host) {
        anyhow::bail!(
            "`tls` is \"none\" with credentials for {host}: the password would cross the \
             network in clear text; use \"starttls\" or \"tls\""
        );
    }
    let tls = match tls {
        SmtpTls::None => Tls::None,
        SmtpTls::Starttls => Tls::Required(TlsParameters::new(host.to_owned())?),
        SmtpTls::Tls => Tls::Wrapper(TlsParameters::new(host.to_owned())?),
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(port)
        .tls(tls)
        .timeout(Some(NETWORK_TIMEOUT));
    if let Some((user, password)) = credentials {
        builder = builder.credentials(Credentials::new(user, password));
    }
    Ok(builder.build())
}

pub(super) struct Email {
    /// Holds the credentials; never shown.
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl Email {
    pub(super) fn new(
        host: &str,
        port: u16,
        tls: SmtpTls,
        credentials: Option<(String, Secret<String>)>,
        from: Mailbox,
        to: Vec<Mailbox>,
    ) -> anyhow::Result<Self> {
        let credentials = credentials.map(|(user, Secret(password))| (user, password));
        Ok(Self {
            transport: smtp_transport(host, port, tls, credentials)?,
            from,
            to,
        })
    }

    pub(super) async fn send(&self, n: &Notification) -> Result<(), AttemptError> {
        let mut message = Message::builder()
            .from(self.from.clone())
            .subject(subject(n))
            .message_id(None);
        for to in &self.to {
            message = message.to(to.clone());
        }
        let message = message
            .header(ContentType::TEXT_PLAIN)
            .body(body(n))
            .map_err(|e| AttemptError::fatal(format!("cannot build the email: {e}")))?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            // 5xx replies (bad recipient, rejected sender) and our own errors will not
            // get better by trying again; 4xx replies and broken connections may.
            Err(e) if e.is_permanent() || e.is_client() => {
                Err(AttemptError::fatal(format!("SMTP: {e}")))
            }
            Err(e) => Err(AttemptError::retryable(format!("SMTP: {e}"))),
        }
    }
}

/// `[FIRING] MemoryLeak: memory leak in release v2 on ...`
pub(super) fn subject(n: &Notification) -> String {
    let summary: String = n
        .summary
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    truncate(
        &format!("[{}] {}: {}", n.status.shout(), n.alert, summary.trim()),
        250,
    )
}

/// The plain-text body: what, how bad, the evidence, and where to look.
pub(super) fn body(n: &Notification) -> String {
    let mut body = format!(
        "{}: {} ({})\n\n{}\n",
        n.status.shout(),
        n.alert,
        n.severity,
        n.summary.trim()
    );
    if !n.description.trim().is_empty() {
        body.push_str(&format!("\n{}\n", n.description.trim()));
    }
    if !n.labels.is_empty() {
        body.push_str("\nLabels:\n");
        for (k, v) in &n.labels {
            body.push_str(&format!("  {k}: {v}\n"));
        }
    }
    body.push_str(&format!("\nStarted: {}\n", human_time(n.starts_at_ms)));
    if let Some(ends_at_ms) = n.ends_at_ms {
        body.push_str(&format!("Ended: {}\n", human_time(ends_at_ms)));
    }
    if let Some(url) = &n.dashboard_url {
        body.push_str(&format!("Dashboard: {url}\n"));
    }
    body.push_str(&format!(
        "Fingerprint: {}\n\n-- \nSent by Warden\n",
        n.fingerprint
    ));
    body
}
