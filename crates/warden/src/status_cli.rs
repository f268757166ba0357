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

#[derive(clap::Args)]
pub(crate) struct ExportArgs {
    /// Where to write the files (created if needed).
    dir: PathBuf,
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
    /// Print the files written as JSON.
    #[arg(long)]
    json: bool,
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
        println!("{}", serde_json::to_string_pretty(incident)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} {verb}: {} ({}, impact {})",
        incident.id, incident.name, incident.status, incident.impact
    );
    if let Some(update) = incident.incident_updates.first() {
        for change in update.affected_components.iter().flatten() {
            println!(
                "  {}: {} -> {}",
                change.code, change.old_status, change.new_status
            );
        }
        println!("  posted: {}", update.body);
    }
    println!("  {}", incident.shortlink);
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
                println!("{}", serde_json::to_string_pretty(&document.incidents)?);
            } else if document.incidents.is_empty() {
                println!(
                    "no {}incidents",
                    if args.open { "open " } else { "recent " }
                );
            } else {
                println!(
                    "{:<12}  {:<13}  {:<8}  {:<24}  NAME",
                    "ID", "STATUS", "IMPACT", "STARTED"
                );
                for i in &document.incidents {
                    println!(
                        "{:<12}  {:<13}  {:<8}  {:<24}  {}",
                        i.id, i.status, i.impact, i.started_at, i.name
                    );
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
                println!("{}", serde_json::to_string_pretty(&component)?);
            } else {
                println!(
                    "{} ({}) is {}",
                    component.id, component.name, component.status
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        StatusCommand::Component(ComponentCommand::List { console }) => {
            let document = client(&console, false)?
                .components()
                .await
                .map_err(refused)?;
            if console.json {
                println!("{}", serde_json::to_string_pretty(&document.components)?);
            } else {
                for c in document.components.iter().filter(|c| !c.group) {
                    println!("{:<24}  {:<22}  {}", c.id, c.status, c.name);
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
        StatusCommand::Export(args) => export(&args),
    }
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
    let db = args.data_dir.join("control.db");
    anyhow::ensure!(
        db.is_file(),
        "no store at {}: point --data-dir at the data directory of `warden up`",
        db.display()
    );
    let store = warden_store::Store::open(&db)?;
    let path = StatusConfig::locate(args.status_config.as_deref(), &args.data_dir);
    let config = StatusConfig::load(path.as_deref())?;
    let written =
        warden_status::export::export(&store, &config, &args.dir, warden_store::now_ms())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&written)?);
    } else {
        println!(
            "wrote {} files to {} (open index.html)",
            written.len(),
            args.dir.display()
        );
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
    fn start_times_are_relative_or_rfc3339() {
        let now = warden_store::now_ms();
        let soon = start_time("+30m").unwrap();
        assert!((soon - now - 1_800_000).abs() < 5_000);
        assert_eq!(start_time("1970-01-01T00:00:01Z").unwrap(), 1000);
        assert!(start_time("tonight").is_err());
    }
}
