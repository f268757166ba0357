//! What `warden incident ...` and `warden status ...` use to call the console of a
//! running `warden up`: the admin API with the bearer token for changes and for
//! what only operators may see (subscribers), the public JSON for other lists.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::components::SetComponent;
use crate::incidents::{OpenIncident, UpdateIncident};
use crate::maintenance::{ScheduleMaintenance, UpdateMaintenance};
use crate::postmortem::PublishPostmortem;
use crate::statuspage::{ComponentJson, ComponentsDocument, IncidentJson, IncidentsDocument};
use crate::subscribers::{AddWebhook, SubscriberView};

/// A client of one console.
#[derive(Debug)]
pub struct AdminClient {
    console: String,
    token: Option<String>,
    http: reqwest::Client,
}

/// The console refused a request; nothing changed.
#[derive(Debug, thiserror::Error)]
#[error("{detail}")]
pub struct Rejected {
    /// The HTTP status.
    pub status: u16,
    /// The problem's detail: what to fix.
    pub detail: String,
}

impl AdminClient {
    /// A client for the console at `console`; `token` is needed for changes only.
    ///
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn new(
        console: SocketAddr,
        token: Option<String>,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            console: format!("http://{console}"),
            token,
            http: reqwest::Client::builder().timeout(timeout).build()?,
        })
    }

    /// `POST /api/admin/incidents`.
    ///
    /// # Errors
    /// [`Rejected`] when the console refused; other errors when it cannot be reached.
    pub async fn open_incident(&self, request: &OpenIncident) -> anyhow::Result<IncidentJson> {
        self.send(
            reqwest::Method::POST,
            &["api", "admin", "incidents"],
            Some(request),
        )
        .await
    }

    /// `POST /api/admin/incidents/{id}/updates`.
    ///
    /// # Errors
    /// As [`AdminClient::open_incident`].
    pub async fn update_incident(
        &self,
        id: &str,
        request: &UpdateIncident,
    ) -> anyhow::Result<IncidentJson> {
        self.send(
            reqwest::Method::POST,
            &["api", "admin", "incidents", id, "updates"],
            Some(request),
        )
        .await
    }

    /// `POST /api/admin/incidents/{id}/resolve`.
    ///
    /// # Errors
    /// As [`AdminClient::open_incident`].
    pub async fn resolve_incident(
        &self,
        id: &str,
        request: &UpdateIncident,
    ) -> anyhow::Result<IncidentJson> {
        self.send(
            reqwest::Method::POST,
            &["api", "admin", "incidents", id, "resolve"],
            Some(request),
        )
        .await
    }

    /// `POST /api/admin/incidents/{id}/postmortem`.
    ///
    /// # Errors
    /// As [`AdminClient::open_incident`].
    pub async fn publish_postmortem(
        &self,
        id: &str,
        request: &PublishPostmortem,
    ) -> anyhow::Result<IncidentJson> {
        self.send(
            reqwest::Method::POST,
            &["api", "admin", "incidents", id, "postmortem"],
            Some(request),
        )
        .await
    }

    /// `PATCH /api/admin/components/{id}`.
    ///
    /// # Errors
    /// As [`AdminClient::open_incident`].
    pub async fn set_component(
        &self,
        id: &str,
        request: &SetComponent,
    ) -> anyhow::Result<ComponentJson> {
        self.send(
            reqwest::Method::PATCH,
            &["api", "admin", "components", id],
            Some(request),
        )
        .await
    }

    /// `POST /api/admin/maintenances`.
    ///
    /// # Errors
    /// As [`AdminClient::open_incident`].
    pub async fn schedule_maintenance(
        &self,
        request: &ScheduleMaintenance,
    ) -> anyhow::Result<IncidentJson> {
        self.send(
            reqwest::Method::POST,
            &["api", "admin", "maintenances"],
            Some(request),
        )
        .await
    }

    /// `POST /api/admin/maintenances/{id}/updates`.
    ///
    /// # Errors
    /// As [`AdminClient::open_incident`].
    pub async fn update_maintenance(
        &self,
        id: &str,
        request: &UpdateMaintenance,
    ) -> anyhow::Result<IncidentJson> {
        self.send(
            reqwest::Method::POST,
            &["api", "admin", "maintenances", id, "updates"],
            Some(request),
        )
        .await
    }

    /// `GET /api/v2/incidents.json`, or `incidents/unresolved.json`.
    ///
    /// # Errors
    /// As [`AdminClient::open_incident`].
    pub async fn incidents(&self, unresolved_only: bool) -> anyhow::Result<IncidentsDocument> {
        let path: &[&str] = if unresolved_only {
            &["api", "v2", "incidents", "unresolved.json"]
        } else {
            &["api", "v2", "incidents.json"]
        };
        self.send::<(), _>(reqwest::Method::GET, path, None).await
    }

    /// `GET /api/v2/components.json`.
    ///
    /// # Errors
    /// As [`AdminClient::open_incident`].
    pub async fn components(&self) -> anyhow::Result<ComponentsDocument> {
        self.send::<(), _>(
            reqwest::Method::GET,
            &["api", "v2", "components.json"],
            None,
        )
        .await
    }

    /// `GET /api/admin/subscribers`: every subscriber, without secrets.
    ///
    /// # Errors
    /// As [`AdminClient::open_incident`].
    pub async fn subscribers(&self) -> anyhow::Result<Vec<SubscriberView>> {
        self.send::<(), _>(reqwest::Method::GET, &["api", "admin", "subscribers"], None)
            .await
    }

    /// `POST /api/admin/subscribers`: a webhook subscriber. The answer holds its
    /// secret.
    ///
    /// # Errors
    /// As [`AdminClient::open_incident`].
    pub async fn add_webhook(&self, request: &AddWebhook) -> anyhow::Result<SubscriberView> {
        self.send(
            reqwest::Method::POST,
            &["api", "admin", "subscribers"],
            Some(request),
        )
        .await
    }

    /// `DELETE /api/admin/subscribers/{id}`.
    ///
    /// # Errors
    /// As [`AdminClient::open_incident`].
    pub async fn remove_subscriber(&self, id: &str) -> anyhow::Result<SubscriberView> {
        self.send::<(), _>(
            reqwest::Method::DELETE,
            &["api", "admin", "subscribers", id],
            None,
        )
        .await
    }

    /// `POST /api/admin/subscribers/{id}/reactivate`.
    ///
    /// # Errors
    /// As [`AdminClient::open_incident`].
    pub async fn reactivate_subscriber(&self, id: &str) -> anyhow::Result<SubscriberView> {
        self.send::<(), _>(
            reqwest::Method::POST,
            &["api", "admin", "subscribers", id, "reactivate"],
            None,
        )
        .await
    }

    /// Calls the console; the admin token goes with every change and every
    /// `/api/admin` request.
    async fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        segments: &[&str],
        body: Option<&B>,
    ) -> anyhow::Result<T> {
        let mut url = reqwest::Url::parse(&self.console)?;
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("{} cannot take a path", self.console))?
            .extend(segments);
        let mut request = self.http.request(method, url.clone());
        if body.is_some() || segments.starts_with(&["api", "admin"]) {
            let token = self.token.as_deref().context(
                "no admin token: set WARDEN_ADMIN_TOKEN, or point --data-dir at the data \
                 directory of the running `warden up`",
            )?;
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.with_context(|| {
            format!(
                "cannot reach the console at {}: is `warden up` running (--console)?",
                self.console
            )
        })?;
        let status = response.status();
        let bytes = response.bytes().await?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "the console answered {} with something unexpected",
                    url.path()
                )
            });
        }
        let detail = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["detail"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        Err(Rejected {
            status: status.as_u16(),
            detail: if detail.is_empty() {
                format!("{} answered {status}", url.path())
            } else {
                detail
            },
        }
        .into())
    }
}
