//! The status page's configuration: the page's identity, its components, how often
//! scheduled maintenances are checked, and the message templates of the
//! communication plan (docs/COMMUNICATION.md).
//!
//! It is a TOML file: `WARDEN_STATUS_CONFIG`, else `DATA_DIR/status.toml` when it
//! exists, else the defaults. Every key is optional; a bad value is an error that
//! names the key. [`StatusConfig::example`] prints every key with its default.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::{IncidentStatus, MaintenanceStatus, check_id, slug};

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatusConfig {
    /// `[page]`: the page's identity.
    pub page: PageConfig,
    /// `[[components]]`: what users can see the state of, in page order.
    pub components: Vec<ComponentConfig>,
    /// `[maintenance]`: the clock that starts and ends scheduled maintenances.
    pub maintenance: MaintenanceConfig,
    /// `[templates]`: the default text of each kind of update.
    pub templates: Templates,
    /// `[automation]`: incidents opened and moved by alerts and rollbacks.
    pub automation: crate::automation::AutomationConfig,
    /// `[subscribers]`: sign-up, email and delivery of notifications to subscribers.
    pub subscribers: crate::subscribers::SubscribersConfig,
}

/// `[page]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PageConfig {
    /// The page's id in the JSON (`page.id`, `page_id`): lowercase letters, digits, `-`.
    pub id: String,
    /// The name users see, e.g. `Example API`.
    pub name: String,
    /// Where users reach the page from outside, e.g. `https://status.example.com`;
    /// links in feeds and the JSON are built on it. Unset: the address the request
    /// came to (and relative links in an export).
    pub url: Option<String>,
    /// `page.time_zone` in the JSON. Times on the page are always shown in UTC.
    pub time_zone: String,
}

impl Default for PageConfig {
    fn default() -> Self {
        Self {
            id: "warden".into(),
            name: "Warden".into(),
            url: None,
            time_zone: "Etc/UTC".into(),
        }
    }
}

/// One `[[components]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentConfig {
    /// Stable id used by commands and the JSON [default: the name as a slug, e.g.
    /// `data-retrieval`]. Changing it starts a new component with no history.
    pub id: Option<String>,
    /// The name users see.
    pub name: String,
    /// One sentence under the name.
    pub description: Option<String>,
    /// The group it is shown in, by name; groups are made from these names.
    pub group: Option<String>,
    /// Show its 90-day uptime.
    #[serde(default = "yes")]
    pub showcase: bool,
    /// Show it only while it is not operational.
    #[serde(default)]
    pub only_show_if_degraded: bool,
}

fn yes() -> bool {
    true
}

impl ComponentConfig {
    /// Its id: the configured one or the slug of its name.
    #[must_use]
    pub fn id(&self) -> String {
        self.id.clone().unwrap_or_else(|| slug(&self.name))
    }

    fn standard(name: &str, description: &str) -> Self {
        Self {
            id: None,
            name: name.into(),
            description: Some(description.into()),
            group: None,
            showcase: true,
            only_show_if_degraded: false,
        }
    }
}

/// `[maintenance]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaintenanceConfig {
    /// How often `warden up` checks whether a maintenance window opens or closes.
    #[serde(with = "humantime_serde")]
    pub check_interval: Duration,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        Self {
            check_interval: Duration::from_secs(1),
        }
    }
}

/// `[templates]`: the text an update gets when none is written. Placeholders:
/// `{name}` (the incident's or maintenance's title), `{components}` (the names of
/// the components it concerns, or "our services"), `{are}` ("is" after one
/// component, "are" after several: "{components} {are} recovering"), `{start}` and
/// `{end}` (a maintenance's window, UTC); `{{` and `}}` are literal braces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Templates {
    /// An incident is opened, cause unknown.
    pub investigating: String,
    /// The cause is known.
    pub identified: String,
    /// A fix is in place.
    pub monitoring: String,
    /// The incident is over.
    pub resolved: String,
    /// The review is published.
    pub postmortem: String,
    /// A maintenance is announced.
    pub maintenance_scheduled: String,
    /// Its window opens.
    pub maintenance_in_progress: String,
    /// The work is being checked.
    pub maintenance_verifying: String,
    /// Its window closes.
    pub maintenance_completed: String,
}

impl Default for Templates {
    fn default() -> Self {
        Self {
            investigating: "We are investigating errors and slow responses affecting \
                {components}. We will post an update within 30 minutes, sooner if we learn more."
                .into(),
            identified: "We have found the cause of the problem affecting {components} and \
                are working on a fix. Next update within 30 minutes."
                .into(),
            monitoring: "A fix is in place and {components} {are} recovering; we are \
                watching that it holds. Next update within 30 minutes, or when this is resolved."
                .into(),
            resolved: "This incident is resolved: {components} {are} working normally again. \
                We will publish a review of what happened and what we are changing."
                .into(),
            postmortem: "We have published our review of this incident: what happened, \
                why, and what we are changing so that it does not happen again."
                .into(),
            maintenance_scheduled: "We will carry out scheduled maintenance on \
                {components} from {start} to {end}. We do not expect you to notice; if \
                anything is affected we will say so here."
                .into(),
            maintenance_in_progress: "Scheduled maintenance is in progress. We will post \
                an update when it is complete."
                .into(),
            maintenance_verifying: "The maintenance work is done; we are checking that \
                everything works as expected."
                .into(),
            maintenance_completed: "The scheduled maintenance is complete.".into(),
        }
    }
}

/// The values placeholders are replaced with.
#[derive(Debug, Clone, Default)]
pub struct TemplateValues {
    /// `{name}`.
    pub name: String,
    /// The names of the components, in page order: `{components}` lists them
    /// ("API, Authentication and Data retrieval", "our services" when there are
    /// none) and `{are}` agrees with them.
    pub components: Vec<String>,
    /// `{start}`.
    pub start: String,
    /// `{end}`.
    pub end: String,
}

const PLACEHOLDERS: [&str; 5] = ["name", "components", "are", "start", "end"];

impl Templates {
    /// The template for an incident's status.
    #[must_use]
    pub fn for_incident(&self, status: IncidentStatus) -> &str {
        match status {
            IncidentStatus::Investigating => &self.investigating,
            IncidentStatus::Identified => &self.identified,
            IncidentStatus::Monitoring => &self.monitoring,
            IncidentStatus::Resolved => &self.resolved,
            IncidentStatus::Postmortem => &self.postmortem,
        }
    }

    /// The template for a maintenance's status.
    #[must_use]
    pub fn for_maintenance(&self, status: MaintenanceStatus) -> &str {
        match status {
            MaintenanceStatus::Scheduled => &self.maintenance_scheduled,
            MaintenanceStatus::InProgress => &self.maintenance_in_progress,
            MaintenanceStatus::Verifying => &self.maintenance_verifying,
            MaintenanceStatus::Completed => &self.maintenance_completed,
        }
    }

    fn all(&self) -> [(&'static str, &str); 9] {
        [
            ("investigating", &self.investigating),
            ("identified", &self.identified),
            ("monitoring", &self.monitoring),
            ("resolved", &self.resolved),
            ("postmortem", &self.postmortem),
            ("maintenance_scheduled", &self.maintenance_scheduled),
            ("maintenance_in_progress", &self.maintenance_in_progress),
            ("maintenance_verifying", &self.maintenance_verifying),
            ("maintenance_completed", &self.maintenance_completed),
        ]
    }
}

/// Replaces the placeholders of `template` (checked by [`StatusConfig::validate`]).
#[must_use]
pub fn fill(template: &str, values: &TemplateValues) -> String {
    let components = match values.components.as_slice() {
        [] => "our services".to_owned(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    };
    let are = if values.components.len() == 1 {
        "is"
    } else {
        "are"
    };
    let mut out = String::with_capacity(template.len() + 64);
    let _ = scan(template, |piece| match piece {
        Piece::Text(text) => out.push_str(text),
        Piece::Placeholder(name) => out.push_str(match name {
            "name" => &values.name,
            "components" => &components,
            "are" => are,
            "start" => &values.start,
            "end" => &values.end,
            _ => "",
        }),
    });
    out.trim().to_owned()
}

enum Piece<'a> {
    Text(&'a str),
    Placeholder(&'a str),
}

/// Splits a template into text and placeholders; an error names the problem.
fn scan<'a>(template: &'a str, mut each: impl FnMut(Piece<'a>)) -> Result<(), String> {
    let mut rest = template;
    while let Some(at) = rest.find(['{', '}']) {
        each(Piece::Text(&rest[..at]));
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("{{") {
            each(Piece::Text("{"));
            rest = after;
        } else if let Some(after) = tail.strip_prefix("}}") {
            each(Piece::Text("}"));
            rest = after;
        } else if tail.starts_with('}') {
            return Err("a lone `}`: write `}}` for a brace".into());
        } else {
            let Some(end) = tail.find('}') else {
                return Err("a `{` is not closed: write `{{` for a brace".into());
            };
            let name = &tail[1..end];
            if !PLACEHOLDERS.contains(&name) {
                return Err(format!(
                    "unknown placeholder {{{name}}}: use {}",
                    PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
                ));
            }
            each(Piece::Placeholder(name));
            rest = &tail[end + 1..];
        }
    }
    each(Piece::Text(rest));
    Ok(())
}

impl Default for StatusConfig {
    fn default() -> Self {
        Self {
            page: PageConfig::default(),
            components: vec![
                ComponentConfig::standard("API", "The HTTP API, as a whole."),
                ComponentConfig::standard("Authentication", "Sign-up and sign-in."),
                ComponentConfig::standard("Data retrieval", "Reading and listing your items."),
            ],
            maintenance: MaintenanceConfig::default(),
            templates: Templates::default(),
            automation: crate::automation::AutomationConfig::default(),
            subscribers: crate::subscribers::SubscribersConfig::default(),
        }
    }
}

impl StatusConfig {
    /// Reads `path`, or the defaults when `None`, and checks it.
    ///
    /// # Errors
    /// The file cannot be read, or a key has a bad value (the error names it).
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let config: Self = match path {
            None => Self::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    anyhow::anyhow!("cannot read the status config {}: {e}", path.display())
                })?;
                toml::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("status config {}: {e}", path.display()))?
            }
        };
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("status config: {e}"))?;
        Ok(config)
    }

    /// The file to read for `data_dir`: `explicit` (WARDEN_STATUS_CONFIG) when
    /// given, else `DATA_DIR/status.toml` when it exists.
    #[must_use]
    pub fn locate(explicit: Option<&Path>, data_dir: &Path) -> Option<std::path::PathBuf> {
        if let Some(path) = explicit {
            return Some(path.to_owned());
        }
        let default = data_dir.join("status.toml");
        default.is_file().then_some(default)
    }

    /// Every key with its default value, as TOML.
    #[must_use]
    pub fn example() -> String {
        toml::to_string_pretty(&Self::default()).unwrap_or_default()
    }

    /// Checks what serde cannot; the error names the key.
    ///
    /// # Errors
    /// A message naming the bad key and what it accepts.
    pub fn validate(&self) -> Result<(), String> {
        check_id(&self.page.id).map_err(|e| format!("page.id: {e}"))?;
        if self.page.name.trim().is_empty() {
            return Err("page.name: give the name users know the service by".into());
        }
        if let Some(url) = &self.page.url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(format!(
                "page.url: {url:?} must start with http:// or https://"
            ));
        }
        if self.components.is_empty() {
            return Err("components: list at least one [[components]] entry".into());
        }
        let mut ids = BTreeSet::new();
        let mut groups = BTreeSet::new();
        for (index, component) in self.components.iter().enumerate() {
            let key = format!("components[{index}]");
            if component.name.trim().is_empty() || component.name.len() > 100 {
                return Err(format!("{key}.name: give a name of 1 to 100 characters"));
            }
            let id = component.id();
            check_id(&id).map_err(|e| format!("{key}.id: {e}"))?;
            if !ids.insert(id.clone()) {
                return Err(format!(
                    "{key}.id: {id:?} is used twice; give one of them another `id`"
                ));
            }
            if let Some(group) = &component.group {
                let group_id = slug(group);
                check_id(&group_id)
                    .map_err(|e| format!("{key}.group: {group:?} gives no valid id: {e}"))?;
                groups.insert(group_id);
            }
        }
        if let Some(clash) = groups.intersection(&ids).next() {
            return Err(format!(
                "components: the group {clash:?} has the id of a component; rename one"
            ));
        }
        let interval = self.maintenance.check_interval;
        if interval < Duration::from_millis(100) || interval > Duration::from_secs(3600) {
            return Err("maintenance.check_interval: use between 100ms and 1h".into());
        }
        self.subscribers.validate()?;
        for (key, template) in self.templates.all() {
            if template.trim().is_empty() {
                return Err(format!("templates.{key}: must not be empty"));
            }
            scan(template, |_| {}).map_err(|e| format!("templates.{key}: {e}"))?;
        }
        Ok(())
    }

    /// The page's public URL without a trailing `/`, if configured.
    #[must_use]
    pub fn public_url(&self) -> Option<&str> {
        self.page.url.as_deref().map(|u| u.trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn the_defaults_are_valid_and_name_the_three_components() {
        let config = StatusConfig::default();
        config.validate().unwrap();
        assert_eq!(
            config
                .components
                .iter()
                .map(ComponentConfig::id)
                .collect::<Vec<_>>(),
            ["api", "authentication", "data-retrieval"]
        );
        // The example round-trips: every key it prints is accepted.
        let again: StatusConfig = toml::from_str(&StatusConfig::example()).unwrap();
        assert_eq!(again, config);
    }

    #[test]
    fn templates_fill_placeholders_and_keep_escaped_braces() {
        let values = TemplateValues {
            name: "Slow API".into(),
            components: vec!["API".into(), "Authentication".into()],
            start: "13:00".into(),
            end: "14:00".into(),
        };
        assert_eq!(
            fill("{name}: {components} {{x}} from {start} to {end}", &values),
            "Slow API: API and Authentication {x} from 13:00 to 14:00"
        );
    }

    #[test]
    fn the_default_templates_agree_with_one_component_or_several() {
        let templates = Templates::default();
        let named = |names: &[&str]| TemplateValues {
            components: names.iter().map(|n| (*n).to_owned()).collect(),
            ..TemplateValues::default()
        };
        let one = named(&["Authentication"]);
        let two = named(&["Authentication", "Data retrieval"]);
        for status in [IncidentStatus::Monitoring, IncidentStatus::Resolved] {
            let template = templates.for_incident(status);
            let single = fill(template, &one);
            assert!(
                !single.contains("Authentication are") && single.contains("Authentication is"),
                "{single}"
            );
            let plural = fill(template, &two);
            assert!(
                plural.contains("Authentication and Data retrieval are"),
                "{plural}"
            );
            let none = fill(template, &named(&[]));
            assert!(none.contains("our services are"), "{none}");
        }
        assert_eq!(
            fill(
                "{components} {are} back",
                &named(&["API", "Authentication", "Data retrieval"])
            ),
            "API, Authentication and Data retrieval are back"
        );
    }

    #[test]
    fn bad_values_are_errors_naming_the_key() {
        let bad = |toml: &str| {
            toml::from_str::<StatusConfig>(toml)
                .map_err(|e| e.to_string())
                .and_then(|c| c.validate())
                .unwrap_err()
        };
        let error = bad("[templates]\ninvestigating = \"Look at {componnets}\"\n");
        assert!(
            error.contains("templates.investigating") && error.contains("{componnets}"),
            "{error}"
        );
        let error = bad("[[components]]\nname = \"API\"\n[[components]]\nname = \"api\"\n");
        assert!(error.contains("components[1].id"), "{error}");
        let error = bad("[page]\nurl = \"status.example.com\"\n");
        assert!(error.contains("page.url"), "{error}");
        let error = bad("[page]\ncolour = \"red\"\n");
        assert!(error.contains("colour"), "{error}");
        let error = bad("[maintenance]\ncheck_interval = \"1ms\"\n");
        assert!(error.contains("maintenance.check_interval"), "{error}");
        let error = bad("[templates]\nresolved = \"done }\"\n");
        assert!(error.contains("templates.resolved"), "{error}");
        let error = bad("[subscribers]\nconfirm_within = \"0s\"\n");
        assert!(error.contains("subscribers.confirm_within"), "{error}");
        let error = bad("[subscribers]\nconfirm_within = \"two days\"\n");
        assert!(error.contains("confirm_within"), "{error}");
    }
}
