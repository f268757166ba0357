//! `warden incident ...` and `warden status ...`: argument parsing and printing for
//! the status page. Changes go to the running `warden up` over HTTP (its admin API,
//! with its admin token), like `warden deploy`; `warden status export` reads the
//! store directly. The work is in the `warden-status` crate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use warden_status::client::{AdminClient, Rejected};
use warden_status::components::SetComponent;
use warden_status::incidents::{OpenIncident, UpdateIncident};
use warden_status::maintenance::{ScheduleMaintenance, UpdateMaintenance};
use warden_status::statuspage::IncidentJson;
use warden_status::subscribers::{AddWebhook, SubscriberView};
use warden_status::{ComponentStatus, Impact, IncidentStatus, MaintenanceStatus, StatusConfig};

use crate::ConsoleArgs;

#[derive(clap::Subcommand)]
pub(crate) enum IncidentCommand {
    /// Open an incident on the status page, e.g.
    /// `warden incident open "Errors on sign-in" --component authentication=major_outage`.
    ///
    /// Without --message the `investigating` template of the status config is
    /// posted. The impact defaults to what the component states imply.
    Open(OpenArgs),
    /// Post an update: a new status (identified, monitoring, ...), new component
    /// states, a message. `--status postmortem` after it is resolved.
    Update(UpdateArgs),
    /// Resolve an incident; the components it affected go back to operational
    /// unless --component says otherwise.
    Resolve(ResolveArgs),
    /// List the recent incidents (newest first), or only the open ones.
    List(ListArgs),
}

#[derive(clap::Args)]
pub(crate) struct OpenArgs {
    /// The title users see.
    name: String,
    /// What users are told [default: the status's template].
    #[arg(long, short, value_name = "TEXT")]
    message: Option<String>,
    /// investigating, identified or monitoring [default: investigating].
    #[arg(long, value_name = "STATUS")]
    status: Option<IncidentStatus>,
    /// none, minor, major or critical [default: implied by the components].
    #[arg(long, value_name = "IMPACT")]
    impact: Option<Impact>,
    /// A component and its state now, e.g. api=major_outage (repeatable).
    #[arg(long = "component", value_name = "ID=STATUS", value_parser = component_change)]
    components: Vec<(String, ComponentStatus)>,
    #[command(flatten)]
    console: ConsoleArgs,
}

#[derive(clap::Args)]
pub(crate) struct UpdateArgs {
    /// The incident's id (`warden incident list`).
    id: String,
    /// What users are told [default: the status's template].
    #[arg(long, short, value_name = "TEXT")]
    message: Option<String>,
    /// investigating, identified, monitoring, resolved or postmortem.
    #[arg(long, value_name = "STATUS")]
    status: Option<IncidentStatus>,
    /// none, minor, major or critical.
    #[arg(long, value_name = "IMPACT")]
    impact: Option<Impact>,
    /// A component and its new state, e.g. api=degraded_performance (repeatable).
    #[arg(long = "component", value_name = "ID=STATUS", value_parser = component_change)]
    components: Vec<(String, ComponentStatus)>,
    #[command(flatten)]
    console: ConsoleArgs,
}

#[derive(clap::Args)]
pub(crate) struct ResolveArgs {
    /// The incident's id.
    id: String,
    /// What users are told [default: the `resolved` template].
    #[arg(long, short, value_name = "TEXT")]
    message: Option<String>,
    /// A component's state after the incident, when not operational (repeatable).
    #[arg(long = "component", value_name = "ID=STATUS", value_parser = component_change)]
    components: Vec<(String, ComponentStatus)>,
    #[command(flatten)]
    console: ConsoleArgs,
}

#[derive(clap::Args)]
pub(crate) struct ListArgs {
    /// Only incidents not resolved yet.
    #[arg(long)]
    open: bool,
    #[command(flatten)]
    console: ConsoleArgs,
}

#[derive(clap::Subcommand)]
pub(crate) enum StatusCommand {
    /// The components users see: set one's state, list them.
    #[command(subcommand)]
    Component(ComponentCommand),
    /// Scheduled maintenance: announce a window (it starts and ends on time by
    /// itself, and pages no one), or move one along by hand.
    #[command(subcommand)]
    Maintenance(MaintenanceCommand),
    /// Who is told of incidents and maintenance: list the subscribers (email and
    /// webhook), add a webhook, remove one, reactivate a quarantined one.
    ///
    /// People sign up by email on the page's form (/subscribe, double opt-in);
    /// webhooks are added by an operator. Needs the admin token: subscribers are
    /// never public.
    #[command(subcommand)]
    Subscriber(SubscriberCommand),
    /// Write the status page, each incident's page, the /api/v2 JSON and the feeds
    /// as static files into DIR, from the store in --data-dir (no running `warden
    /// up` needed), to serve from anywhere.
    Export(ExportArgs),
}

#[derive(clap::Subcommand)]
pub(crate) enum ComponentCommand {
    /// Set a component's state outside any incident, e.g. `warden status component
    /// set data-retrieval degraded_performance`.
    Set {
        /// The component's id (`warden status component list`).
        id: String,
        /// operational, degraded_performance, partial_outage, major_outage or
        /// under_maintenance.
        status: ComponentStatus,
        #[command(flatten)]
        console: ConsoleArgs,
    },
    /// List the components and their states.
    List {
        #[command(flatten)]
        console: ConsoleArgs,
    },
}

#[derive(clap::Subcommand)]
pub(crate) enum MaintenanceCommand {
    /// Announce a maintenance window, e.g. `warden status maintenance schedule
    /// "Database upgrade" --start 2025-06-01T22:00:00Z --duration 1h --component api`.
    Schedule {
        /// The title users see.
        name: String,
        /// When it starts: RFC 3339 (2025-06-01T22:00:00Z) or +DURATION from now (+30m).
        #[arg(long, value_name = "TIME")]
        start: String,
        /// How long it lasts.
        #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// A component it concerns (repeatable).
        #[arg(long = "component", value_name = "ID")]
        components: Vec<String>,
        /// What users are told [default: the `maintenance_scheduled` template].
        #[arg(long, short, value_name = "TEXT")]
        message: Option<String>,
        #[command(flatten)]
        console: ConsoleArgs,
    },
    /// Move a maintenance along (in_progress, verifying, completed) or post a message.
    Update {
        /// The maintenance's id.
        id: String,
        /// in_progress, verifying or completed.
        #[arg(long, value_name = "STATUS")]
        status: Option<MaintenanceStatus>,
        /// What users are told [default: the status's template].
        #[arg(long, short, value_name = "TEXT")]
        message: Option<String>,
        #[command(flatten)]
        console: ConsoleArgs,
    },
}

#[derive(clap::Subcommand)]
pub(crate) enum SubscriberCommand {
    /// List every subscriber: id, kind, state, when it signed up, its email address
    /// or webhook URL and its components, e.g. `warden status subscriber list`.
    ///
    /// States: pending (email not confirmed yet; it expires after `[subscribers]
    /// confirm_within`), active, unsubscribed, quarantined (its notifications kept
    /// failing; see `reactivate`). Secrets are never shown.
    List {
        #[command(flatten)]
        console: ConsoleArgs,
    },
    /// Add a webhook subscriber, active at once, e.g. `WARDEN_WEBHOOK_SECRET=$(openssl
    /// rand -hex 32) warden status subscriber add-webhook https://example.com/hooks/status
    /// --component api`.
    ///
    /// Each incident and maintenance post is POSTed to URL as Statuspage's JSON
    /// payload, signed with the secret in `X-Warden-Signature`
    /// (`t=…,v1=HMAC-SHA256(secret, "t.body")`); keep the same secret at the
    /// receiver to check it.
    AddWebhook {
        /// Where to POST: an http:// or https:// URL.
        url: String,
        /// A component it wants to hear about (repeatable) [default: all].
        #[arg(long = "component", value_name = "ID")]
        components: Vec<String>,
        /// The signing secret, at least 16 characters. Prefer the environment
        /// variable: a flag's value shows in the shell history and the process list.
        /// Never printed.
        #[arg(
            long,
            env = "WARDEN_WEBHOOK_SECRET",
            hide_env_values = true,
            value_name = "SECRET"
        )]
        secret: String,
        #[command(flatten)]
        console: ConsoleArgs,
    },
    /// Remove a subscriber (email or webhook) and what is queued for it, e.g.
    /// `warden status subscriber remove 3k9x0q2m7a1b`.
    Remove {
        /// The subscriber's id (`warden status subscriber list`).
        id: String,
        #[command(flatten)]
        console: ConsoleArgs,
    },
    /// Let a quarantined subscriber receive again, from the next post on (what was
    /// dropped while it was quarantined is not resent), e.g. `warden status
    /// subscriber reactivate 3k9x0q2m7a1b`.
    Reactivate {
        /// The subscriber's id (`warden status subscriber list`).
        id: String,
        #[command(flatten)]
        console: ConsoleArgs,
    },
}

#[derive(clap::Args)]
pub(crate) struct ExportArgs {
    /// Where to write the files (created if needed).
    dir: PathBuf,
    /// Where the files will be served from, e.g. https://status.example.com: links
    /// in the pages, JSON and feeds are absolute on it [default: `page.url` of the
    /// status config, else relative links].
    #[arg(long, env = "WARDEN_BASE_URL", value_name = "URL")]
    base_url: Option<String>,
    #[command(flatten)]
    records: RecordsArgs,
    /// Print the files written as JSON.
    #[arg(long)]
    json: bool,
}

/// What a command reads of `warden up`'s records without it running: the store in
/// its data directory, and the status config.
#[derive(clap::Args)]
pub(crate) struct RecordsArgs {
    /// The data directory of `warden up`, whose store is read.
    #[arg(
        long,
        env = "WARDEN_DATA_DIR",
        value_name = "DIR",
        default_value = "./warden-data"
    )]
    data_dir: PathBuf,
    /// The status config [default: DATA_DIR/status.toml when present].
    #[arg(
        long = "status-config",
        env = "WARDEN_STATUS_CONFIG",
        value_name = "FILE"
    )]
    status_config: Option<PathBuf>,
}

impl RecordsArgs {
    /// The store and its file; an error that names --data-dir when there is none.
    pub(crate) fn store(&self) -> anyhow::Result<(warden_store::Store, PathBuf)> {
        let db = self.data_dir.join("control.db");
        anyhow::ensure!(
            db.is_file(),
            "no store at {}: point --data-dir at the data directory of `warden up`",
            db.display()
        );
        Ok((warden_store::Store::open(&db)?, db))
    }

    /// --status-config, else DATA_DIR/status.toml, else the defaults.
    pub(crate) fn status_config(&self) -> anyhow::Result<StatusConfig> {
        let path = StatusConfig::locate(self.status_config.as_deref(), &self.data_dir);
        StatusConfig::load(path.as_deref())
    }
}

/// "api=major_outage" → ("api", MajorOutage).
fn component_change(text: &str) -> Result<(String, ComponentStatus), String> {
    let (id, status) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: write ID=STATUS, e.g. api=major_outage"))?;
    Ok((id.trim().to_owned(), status.parse()?))
}

/// The status page's routes for `warden up`'s console: loads the status config
/// (WARDEN_STATUS_CONFIG, else DATA_DIR/status.toml, else the defaults), brings the
/// components in line with it and starts the maintenance clock.
pub(crate) fn console(
    data_dir: &Path,
    store: warden_store::Store,
    wiring: warden_status::Wiring,
) -> anyhow::Result<axum::Router> {
    let explicit = std::env::var_os("WARDEN_STATUS_CONFIG").map(PathBuf::from);
    let path = StatusConfig::locate(explicit.as_deref(), data_dir);
    warden_status::start(store, StatusConfig::load(path.as_deref())?, wiring)
}

fn client(console: &ConsoleArgs, needs_token: bool) -> anyhow::Result<AdminClient> {
    let token = if needs_token {
        Some(warden_deploy::admin::token(
            console.admin_token.as_deref(),
            &console.data_dir,
            false,
        )?)
    } else {
        None
    };
    AdminClient::new(console.console, token, Duration::from_secs(30))
}

/// A refusal is said plainly: nothing changed, and why.
fn refused(error: anyhow::Error) -> anyhow::Error {
    match error.downcast::<Rejected>() {
        Ok(rejected) => anyhow::anyhow!(
            "refused (HTTP {}), nothing changed: {}",
            rejected.status,
            rejected.detail
        ),
        Err(error) => error,
    }
}

fn print_incident(verb: &str, incident: &IncidentJson, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        warden_telemetry::outln!("{}", serde_json::to_string_pretty(incident)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    warden_telemetry::outln!(
        "{} {verb}: {} ({}, impact {})",
        incident.id,
        incident.name,
        incident.status,
        incident.impact
    )?;
    if let Some(update) = incident.incident_updates.first() {
        for change in update.affected_components.iter().flatten() {
            warden_telemetry::outln!(
                "  {}: {} -> {}",
                change.code,
                change.old_status,
                change.new_status
            )?;
        }
        warden_telemetry::outln!("  posted: {}", update.body)?;
    }
    warden_telemetry::outln!("  {}", incident.shortlink)?;
    Ok(ExitCode::SUCCESS)
}

/// `warden incident ...`.
pub(crate) async fn incident(command: IncidentCommand) -> anyhow::Result<ExitCode> {
    match command {
        IncidentCommand::Open(args) => {
            let request = OpenIncident {
                name: args.name,
                status: args.status,
                impact: args.impact,
                body: args.message,
                components: args.components.into_iter().collect(),
            };
            let incident = client(&args.console, true)?
                .open_incident(&request)
                .await
                .map_err(refused)?;
            print_incident("opened", &incident, args.console.json)
        }
        IncidentCommand::Update(args) => {
            let request = UpdateIncident {
                status: args.status,
                impact: args.impact,
                body: args.message,
                components: args.components.into_iter().collect(),
            };
            let incident = client(&args.console, true)?
                .update_incident(&args.id, &request)
                .await
                .map_err(refused)?;
            print_incident("updated", &incident, args.console.json)
        }
        IncidentCommand::Resolve(args) => {
            let request = UpdateIncident {
                body: args.message,
                components: args.components.into_iter().collect::<BTreeMap<_, _>>(),
                ..UpdateIncident::default()
            };
            let incident = client(&args.console, true)?
                .resolve_incident(&args.id, &request)
                .await
                .map_err(refused)?;
            print_incident("resolved", &incident, args.console.json)
        }
        IncidentCommand::List(args) => {
            let document = client(&args.console, false)?
                .incidents(args.open)
                .await
                .map_err(refused)?;
            if args.console.json {
                warden_telemetry::outln!("{}", serde_json::to_string_pretty(&document.incidents)?)?;
            } else if document.incidents.is_empty() {
                warden_telemetry::outln!(
                    "no {}incidents",
                    if args.open { "open " } else { "recent " }
                )?;
            } else {
                warden_telemetry::outln!(
                    "{:<12}  {:<13}  {:<8}  {:<24}  NAME",
                    "ID",
                    "STATUS",
                    "IMPACT",
                    "STARTED"
                )?;
                for i in &document.incidents {
                    warden_telemetry::outln!(
                        "{:<12}  {:<13}  {:<8}  {:<24}  {}",
                        i.id,
                        i.status,
                        i.impact,
                        i.started_at,
                        i.name
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `warden status ...`.
pub(crate) async fn status(command: StatusCommand) -> anyhow::Result<ExitCode> {
    match command {
        StatusCommand::Component(ComponentCommand::Set {
            id,
            status,
            console,
        }) => {
            let component = client(&console, true)?
                .set_component(&id, &SetComponent { status })
                .await
                .map_err(refused)?;
            if console.json {
                warden_telemetry::outln!("{}", serde_json::to_string_pretty(&component)?)?;
            } else {
                warden_telemetry::outln!(
                    "{} ({}) is {}",
                    component.id,
                    component.name,
                    component.status
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
        StatusCommand::Component(ComponentCommand::List { console }) => {
            let document = client(&console, false)?
                .components()
                .await
                .map_err(refused)?;
            if console.json {
                warden_telemetry::outln!(
                    "{}",
                    serde_json::to_string_pretty(&document.components)?
                )?;
            } else {
                for c in document.components.iter().filter(|c| !c.group) {
                    warden_telemetry::outln!("{:<24}  {:<22}  {}", c.id, c.status, c.name)?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        StatusCommand::Maintenance(MaintenanceCommand::Schedule {
            name,
            start,
            duration,
            components,
            message,
            console,
        }) => {
            let start_ms = start_time(&start)?;
            let end_ms =
                start_ms.saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX));
            let request = ScheduleMaintenance {
                name,
                scheduled_for: warden_status::json_time(start_ms),
                scheduled_until: warden_status::json_time(end_ms),
                components,
                body: message,
            };
            let maintenance = client(&console, true)?
                .schedule_maintenance(&request)
                .await
                .map_err(refused)?;
            print_incident("scheduled", &maintenance, console.json)
        }
        StatusCommand::Maintenance(MaintenanceCommand::Update {
            id,
            status,
            message,
            console,
        }) => {
            let maintenance = client(&console, true)?
                .update_maintenance(
                    &id,
                    &UpdateMaintenance {
                        status,
                        body: message,
                    },
                )
                .await
                .map_err(refused)?;
            print_incident("updated", &maintenance, console.json)
        }
        StatusCommand::Subscriber(command) => subscriber(command).await,
        StatusCommand::Export(args) => export(&args),
    }
}

/// `warden status subscriber ...`.
async fn subscriber(command: SubscriberCommand) -> anyhow::Result<ExitCode> {
    match command {
        SubscriberCommand::List { console } => {
            let subscribers = client(&console, true)?
                .subscribers()
                .await
                .map_err(refused)?;
            if console.json {
                warden_telemetry::outln!("{}", serde_json::to_string_pretty(&subscribers)?)?;
            } else {
                warden_telemetry::out!("{}", subscriber_table(&subscribers))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        SubscriberCommand::AddWebhook {
            url,
            components,
            secret,
            console,
        } => {
            anyhow::ensure!(
                secret.trim().chars().count() >= 16,
                "--secret: use at least 16 characters, e.g. `openssl rand -hex 32`; nothing \
                 changed"
            );
            let request = AddWebhook {
                url,
                components,
                secret: Some(secret),
            };
            let added = client(&console, true)?
                .add_webhook(&request)
                .await
                .map_err(refused)?;
            print_subscriber("added", added, console.json)
        }
        SubscriberCommand::Remove { id, console } => {
            let removed = client(&console, true)?
                .remove_subscriber(&id)
                .await
                .map_err(refused)?;
            print_subscriber("removed", removed, console.json)
        }
        SubscriberCommand::Reactivate { id, console } => {
            let reactivated = client(&console, true)?
                .reactivate_subscriber(&id)
                .await
                .map_err(refused)?;
            print_subscriber("reactivated", reactivated, console.json)
        }
    }
}

/// One subscriber after a change; never its secret.
fn print_subscriber(verb: &str, mut view: SubscriberView, json: bool) -> anyhow::Result<ExitCode> {
    view.secret = None;
    if json {
        warden_telemetry::outln!("{}", serde_json::to_string_pretty(&view)?)?;
    } else {
        warden_telemetry::outln!(
            "{} {verb}: {} {} ({}, components: {})",
            view.id,
            view.kind,
            view.address,
            view.state,
            components_text(&view.components)
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn components_text(components: &[String]) -> String {
    if components.is_empty() {
        "all".into()
    } else {
        components.join(",")
    }
}

/// The subscribers as a table; the variable-width columns last.
fn subscriber_table(subscribers: &[SubscriberView]) -> String {
    if subscribers.is_empty() {
        return "no subscribers\n".into();
    }
    let width = subscribers
        .iter()
        .map(|s| s.address.chars().count())
        .chain(["ADDRESS/URL".len()])
        .max()
        .unwrap_or_default();
    let mut out = format!(
        "{:<12}  {:<7}  {:<12}  {:<24}  {:<width$}  COMPONENTS\n",
        "ID", "KIND", "STATE", "CREATED", "ADDRESS/URL"
    );
    for s in subscribers {
        out.push_str(&format!(
            "{:<12}  {:<7}  {:<12}  {:<24}  {:<width$}  {}\n",
            s.id,
            s.kind,
            s.state,
            s.created_at,
            s.address,
            components_text(&s.components)
        ));
        if s.state == "quarantined" {
            out.push_str(&format!(
                "{:14}{} notifications given up on in a row; last error: {}\n",
                "",
                s.failures,
                s.last_error.as_deref().unwrap_or("none recorded")
            ));
        }
    }
    out
}

/// "+30m" → now + 30 minutes; otherwise RFC 3339.
fn start_time(text: &str) -> anyhow::Result<i64> {
    if let Some(relative) = text.trim().strip_prefix('+') {
        let duration = humantime::parse_duration(relative)
            .map_err(|e| anyhow::anyhow!("--start {text:?}: {e}; e.g. +30m"))?;
        return Ok(warden_store::now_ms()
            .saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)));
    }
    warden_status::parse_time("--start", text).map_err(|e| anyhow::anyhow!("{e}, or +DURATION"))
}

fn export(args: &ExportArgs) -> anyhow::Result<ExitCode> {
    let (store, _) = args.records.store()?;
    let config = args.records.status_config()?;
    let written = warden_status::export::export(
        &store,
        &config,
        &args.dir,
        warden_store::now_ms(),
        args.base_url.as_deref(),
    )?;
    if args.json {
        warden_telemetry::outln!("{}", serde_json::to_string_pretty(&written)?)?;
    } else {
        warden_telemetry::outln!(
            "wrote {} files to {} (open index.html)",
            written.len(),
            args.dir.display()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn component_changes_parse_with_clear_errors() {
        assert_eq!(
            component_change("api=major_outage").unwrap(),
            ("api".into(), ComponentStatus::MajorOutage)
        );
        assert!(component_change("api").unwrap_err().contains("ID=STATUS"));
        assert!(
            component_change("api=down")
                .unwrap_err()
                .contains("major_outage")
        );
    }

    #[test]
    fn the_subscriber_table_lines_up_and_shows_no_secret() {
        let view = |id: &str, kind: &str, address: &str, state: &str| SubscriberView {
            id: id.into(),
            kind: kind.into(),
            address: address.into(),
            components: Vec::new(),
            state: state.into(),
            created_at: "2025-01-02T13:04:05.123Z".into(),
            confirmed_at: None,
            failures: 0,
            last_error: None,
            secret: Some("do-not-show-this-secret".into()),
        };
        let mut hook = view("b", "webhook", "https://example.com/hooks/status", "active");
        hook.components = vec!["api".into(), "authentication".into()];
        let mut broken = view("c", "webhook", "http://127.0.0.1:9/x", "quarantined");
        broken.failures = 3;
        broken.last_error = Some("HTTP 500".into());
        let table = subscriber_table(&[
            view("a", "email", "ann@example.com", "pending"),
            hook,
            broken,
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 5, "{table}");
        assert!(lines[0].starts_with("ID ") && lines[0].ends_with("COMPONENTS"));
        assert!(lines[1].contains("ann@example.com") && lines[1].ends_with("  all"));
        assert!(lines[2].ends_with("https://example.com/hooks/status  api,authentication"));
        // The components column starts at the same place on every line.
        let at = lines[0].find("COMPONENTS").unwrap();
        assert_eq!(lines[1].find("all"), Some(at));
        assert_eq!(lines[2].find("api,"), Some(at));
        assert!(lines[4].contains("3 notifications") && lines[4].contains("HTTP 500"));
        assert!(!table.contains("do-not-show"));
        assert_eq!(subscriber_table(&[]), "no subscribers\n");
    }

    #[test]
    fn start_times_are_relative_or_rfc3339() {
        let now = warden_store::now_ms();
        let soon = start_time("+30m").unwrap();
        assert!((soon - now - 1_800_000).abs() < 5_000);
        assert_eq!(start_time("1970-01-01T00:00:01Z").unwrap(), 1000);
        assert!(start_time("tonight").is_err());
    }
}
