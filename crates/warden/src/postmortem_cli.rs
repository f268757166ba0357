//! `warden postmortem INCIDENT` and `warden postmortem publish INCIDENT`: argument
//! parsing and output. Drafting reads the store in the data directory directly (no
//! running `warden up` needed, like `warden release list`); publishing goes through
//! the running `warden up`'s admin API with its admin token, like `warden incident`.
//! The work is in `warden_status::postmortem`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use warden_status::StatusError;
use warden_status::client::AdminClient;
use warden_status::postmortem::{Postmortem, PublishPostmortem};
use warden_status::statuspage::Links;

use crate::ConsoleArgs;
use crate::status_cli::RecordsArgs;

/// `warden postmortem`'s flags.
#[derive(clap::Args)]
#[command(
    subcommand_negates_reqs = true,
    override_usage = "warden postmortem [OPTIONS] <INCIDENT>\n       \
                      warden postmortem publish [OPTIONS] <INCIDENT>"
)]
pub(crate) struct PostmortemArgs {
    #[command(subcommand)]
    command: Option<PostmortemCommand>,
    /// The incident's id (`warden incident list`).
    #[arg(value_name = "INCIDENT", required = true)]
    incident: Option<String>,
    /// md: Markdown to edit and publish; html: a page with the memory chart inline;
    /// json: every figure with its source, and `culprit` (the top candidate package,
    /// or null) for machines.
    #[arg(long, value_enum, default_value_t = Format::Md)]
    format: Format,
    /// Write the draft to FILE instead of stdout. With md, the memory chart is
    /// written beside it (postmortem-INCIDENT-memory.svg), where the draft links it.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// The public version, for users (md or html): what happened, why, how it was
    /// fixed and what changes, in words, without record citations, server
    /// addresses, metric names or commands. It is what `warden postmortem publish`
    /// publishes; edit it and publish it with --file.
    #[arg(long)]
    public: bool,
    #[command(flatten)]
    records: RecordsArgs,
}

#[derive(clap::Subcommand)]
enum PostmortemCommand {
    /// Publish the postmortem of a resolved incident on the status page: it is stored
    /// with the incident (Statuspage's `postmortem_body`), the incident moves to
    /// `postmortem` with an update linking to /status/incidents/ID/postmortem.
    ///
    /// Without --file the console publishes the public version of the draft it
    /// makes from its store (`warden postmortem INCIDENT --public`); with --file,
    /// the text given, which must not hold what is for the team only (the draft's
    /// instructions, internal addresses, metric names). Publishing again replaces
    /// the text.
    Publish(PublishArgs),
}

#[derive(clap::Args)]
struct PublishArgs {
    /// The incident's id; it must be resolved.
    incident: String,
    /// The postmortem to publish, in Markdown (e.g. `warden postmortem INCIDENT
    /// --public --out FILE`, edited) [default: the public version of the draft].
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    #[command(flatten)]
    console: ConsoleArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// Markdown.
    #[value(alias = "markdown")]
    Md,
    /// HTML.
    Html,
    /// JSON.
    Json,
}

/// `warden postmortem ...`.
pub(crate) async fn run(args: PostmortemArgs) -> anyhow::Result<ExitCode> {
    match (args.command, args.incident) {
        (Some(PostmortemCommand::Publish(publish)), _) => publish_postmortem(publish).await,
        (None, Some(_)) if args.public && args.format == Format::Json => anyhow::bail!(
            "--public is a text for users: use it with --format md or html (json is the \
             draft's figures with their sources)"
        ),
        (None, Some(incident)) => draft(
            &incident,
            args.format,
            args.public,
            args.out.as_deref(),
            &args.records,
        ),
        (None, None) => anyhow::bail!(
            "name the incident: `warden postmortem INCIDENT` (`warden incident list` shows them)"
        ),
    }
}

fn draft(
    incident: &str,
    format: Format,
    public: bool,
    out: Option<&Path>,
    records: &RecordsArgs,
) -> anyhow::Result<ExitCode> {
    let (store, db) = records.store()?;
    let postmortem = warden_status::postmortem::draft(&store, incident).map_err(|e| match e {
        StatusError::NotFound(message) => {
            anyhow::anyhow!("{message}; the store read is {}", db.display())
        }
        other => anyhow::anyhow!("cannot draft the postmortem: {other}"),
    })?;
    let text = match format {
        Format::Md if public => postmortem.to_public_markdown(),
        Format::Md => postmortem.to_markdown(),
        Format::Json => format!("{}\n", serde_json::to_string_pretty(&postmortem)?),
        Format::Html => {
            let config = records.status_config()?;
            let links = Links {
                base: config.public_url().unwrap_or_default().to_owned(),
                static_files: false,
            };
            if public {
                postmortem.to_public_html(&config, &links)
            } else {
                postmortem.to_html(&config, &links)
            }
            .map_err(|e| anyhow::anyhow!("cannot render the postmortem: {e}"))?
        }
    };
    let Some(out) = out else {
        warden_telemetry::out!("{text}")?;
        return Ok(ExitCode::SUCCESS);
    };
    write(out, &text)?;
    if format == Format::Md {
        let chart = out
            .parent()
            .unwrap_or_else(|| Path::new(""))
            .join(Postmortem::chart_file(&postmortem.incident.id));
        let svg = if public {
            postmortem.public_chart_svg()
        } else {
            postmortem.chart_svg()
        };
        write(&chart, &svg)?;
        eprintln!(
            "wrote {} and its memory chart {}",
            out.display(),
            chart.display()
        );
    } else {
        eprintln!("wrote {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

async fn publish_postmortem(args: PublishArgs) -> anyhow::Result<ExitCode> {
    let body =
        match &args.file {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                anyhow::anyhow!("cannot read the postmortem {}: {e}", path.display())
            })?),
            None => None,
        };
    let token = warden_deploy::admin::token(
        args.console.admin_token.as_deref(),
        &args.console.data_dir,
        false,
    )?;
    // Drafting on the console reads the log and the series of the incident: allow
    // it more than a plain update.
    let client = AdminClient::new(args.console.console, Some(token), Duration::from_secs(120))?;
    let incident = client
        .publish_postmortem(&args.incident, &PublishPostmortem { body })
        .await
        .map_err(
            |error| match error.downcast::<warden_status::client::Rejected>() {
                Ok(rejected) => anyhow::anyhow!(
                    "refused (HTTP {}), nothing changed: {}",
                    rejected.status,
                    rejected.detail
                ),
                Err(error) => error,
            },
        )?;
    if args.console.json {
        warden_telemetry::outln!("{}", serde_json::to_string_pretty(&incident)?)?;
    } else {
        warden_telemetry::outln!(
            "{}: postmortem published ({}), incident {}",
            incident.id,
            incident.postmortem_published_at.as_deref().unwrap_or("now"),
            incident.status
        )?;
        warden_telemetry::outln!("  {}/postmortem", incident.shortlink)?;
    }
    Ok(ExitCode::SUCCESS)
}
