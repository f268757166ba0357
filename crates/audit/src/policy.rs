//! The dependency policy (`ops/deps-policy.toml`): which licenses are allowed, which
//! advisories are ignored and why and until when, which informational advisories
//! fail the audit, whether duplicate versions fail it, and which sources other than
//! crates.io are trusted.
//!
//! ```toml
//! [advisories]
//! deny_informational = ["unsound", "unmaintained"]   # "notice" may be added
//!
//! [[advisories.ignore]]
//! id = "RUSTSEC-2024-0436"
//! reason = "paste is unmaintained but finished; no replacement needed before 2027"
//! until = "2027-03-31"                               # an expired ignore fails
//!
//! [licenses]
//! allow = ["MIT", "Apache-2.0", "Apache-2.0 WITH LLVM-exception", "BSD-3-Clause"]
//!
//! [[licenses.exception]]                             # one crate, one license text
//! crate = "ring"
//! license = "ISC AND MIT AND OpenSSL"
//! reason = "..."
//!
//! [duplicates]
//! deny = false                                       # true: duplicates fail
//! skip = ["windows-sys"]                             # never reported
//!
//! [sources]
//! allow = ["git+https://github.com/org/repo"]        # besides crates.io
//! ```

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Context;
use serde::Deserialize;
use time::{Date, Month};

/// The parsed policy. Unknown keys are errors, so a typo cannot silently weaken it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    pub advisories: AdvisoryPolicy,
    #[serde(default)]
    pub licenses: LicensePolicy,
    #[serde(default)]
    pub duplicates: DuplicatePolicy,
    #[serde(default)]
    pub sources: SourcePolicy,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdvisoryPolicy {
    /// Informational advisory kinds that fail the audit: `unsound`, `unmaintained`,
    /// `notice`. Vulnerabilities always fail; the other kinds are warnings.
    #[serde(default = "default_deny_informational")]
    pub deny_informational: Vec<Informational>,
    #[serde(default)]
    pub ignore: Vec<IgnoredAdvisory>,
}

impl Default for AdvisoryPolicy {
    fn default() -> Self {
        Self {
            deny_informational: default_deny_informational(),
            ignore: Vec::new(),
        }
    }
}

fn default_deny_informational() -> Vec<Informational> {
    vec![Informational::Unsound, Informational::Unmaintained]
}

/// The informational advisory kinds the policy can deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Informational {
    Unsound,
    Unmaintained,
    Notice,
}

/// An advisory the audit does not fail on, until `until`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IgnoredAdvisory {
    pub id: String,
    pub reason: String,
    /// `YYYY-MM-DD`; from that day on the ignore has expired and fails the audit.
    pub until: String,
}

impl IgnoredAdvisory {
    /// The expiry date, or an error naming the advisory.
    pub fn expiry(&self) -> anyhow::Result<Date> {
        parse_date(&self.until).with_context(|| {
            format!(
                "[[advisories.ignore]] {}: until = {:?} must be a date YYYY-MM-DD",
                self.id, self.until
            )
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicensePolicy {
    /// SPDX license identifiers (or `ID WITH EXCEPTION`) that may be used.
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default, rename = "exception")]
    pub exceptions: Vec<LicenseException>,
}

/// One crate accepted with a license outside the allowed list.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicenseException {
    #[serde(rename = "crate")]
    pub name: String,
    /// The exact license expression accepted (as the crate declares it); a change of
    /// license is reviewed again.
    pub license: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DuplicatePolicy {
    /// Whether more than one version of a crate fails the audit (otherwise a warning).
    #[serde(default)]
    pub deny: bool,
    /// Crates whose duplicates are expected and never reported.
    #[serde(default)]
    pub skip: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcePolicy {
    /// Sources besides crates.io that packages may come from, as they appear in
    /// Cargo.lock without the `#commit` suffix (e.g. `git+https://github.com/o/r`).
    #[serde(default)]
    pub allow: Vec<String>,
}

impl Policy {
    /// Reads and checks a policy file; every error names the file and the key.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the policy file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("policy file {}", path.display()))
    }

    /// Parses and checks policy text.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let policy: Self = toml::from_str(text)?;
        let mut seen = BTreeSet::new();
        for ignore in &policy.advisories.ignore {
            ignore.expiry()?;
            anyhow::ensure!(
                !ignore.reason.trim().is_empty(),
                "[[advisories.ignore]] {}: reason must say why it is ignored",
                ignore.id
            );
            anyhow::ensure!(
                seen.insert(ignore.id.as_str()),
                "[[advisories.ignore]] {} is listed twice",
                ignore.id
            );
        }
        for exception in &policy.licenses.exceptions {
            anyhow::ensure!(
                !exception.reason.trim().is_empty(),
                "[[licenses.exception]] {}: reason must say why it is accepted",
                exception.name
            );
        }
        for license in &policy.licenses.allow {
            let base = license.split(" WITH ").next().unwrap_or(license).trim();
            anyhow::ensure!(
                spdx::license_id(base).is_some(),
                "[licenses] allow: {license:?} is not an SPDX license identifier"
            );
        }
        Ok(policy)
    }

    /// The policy used when the default policy file does not exist: the usual
    /// permissive licenses, unsound and unmaintained advisories fail, no ignores.
    pub fn builtin() -> Self {
        Self {
            licenses: LicensePolicy {
                allow: [
                    "MIT",
                    "Apache-2.0",
                    "Apache-2.0 WITH LLVM-exception",
                    "BSD-2-Clause",
                    "BSD-3-Clause",
                    "ISC",
                    "Zlib",
                    "Unicode-3.0",
                    "Unicode-DFS-2016",
                    "CC0-1.0",
                    "Unlicense",
                    "MPL-2.0",
                    "BSL-1.0",
                ]
                .map(String::from)
                .to_vec(),
                exceptions: Vec::new(),
            },
            ..Self::default()
        }
    }

    /// Whether the license expression `expr` (as a crate declares it) is acceptable
    /// for crate `name`: by an exception for that crate, or because the expression
    /// can be satisfied with allowed licenses only. `Err` when it is not SPDX.
    pub fn license_allowed(&self, name: &str, expr: &str) -> Result<bool, String> {
        if self
            .licenses
            .exceptions
            .iter()
            .any(|e| e.name == name && e.license == expr)
        {
            return Ok(true);
        }
        let parsed = spdx::Expression::parse_mode(expr, spdx::ParseMode::LAX)
            .map_err(|e| format!("not an SPDX expression: {}", e.reason))?;
        let allow = &self.licenses.allow;
        Ok(parsed.evaluate(|req| {
            let whole = req.to_string();
            if allow.contains(&whole) {
                return true;
            }
            match &req.license {
                spdx::LicenseItem::Spdx { id, .. } => {
                    allow.iter().any(|a| a == id.name) && req.addition.is_none()
                }
                spdx::LicenseItem::Other(_) => false,
            }
        }))
    }
}

/// Parses `YYYY-MM-DD`.
pub fn parse_date(text: &str) -> anyhow::Result<Date> {
    let mut parts = text.trim().splitn(3, '-');
    let mut next = |what: &str| -> anyhow::Result<i32> {
        parts
            .next()
            .and_then(|p| p.parse().ok())
            .with_context(|| format!("{text:?}: bad {what}"))
    };
    let (year, month, day) = (next("year")?, next("month")?, next("day")?);
    let month = u8::try_from(month)
        .ok()
        .and_then(|m| Month::try_from(m).ok())
        .with_context(|| format!("{text:?}: bad month"))?;
    let day = u8::try_from(day).with_context(|| format!("{text:?}: bad day"))?;
    Date::from_calendar_date(year, month, day).with_context(|| format!("{text:?}: no such day"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn licenses_are_evaluated_as_spdx_expressions() {
        let policy = Policy::parse(
            r#"
            [licenses]
            allow = ["MIT", "Apache-2.0", "Apache-2.0 WITH LLVM-exception"]
            [[licenses.exception]]
            crate = "ring"
            license = "ISC AND OpenSSL"
            reason = "reviewed"
            "#,
        )
        .unwrap();
        assert_eq!(policy.license_allowed("a", "MIT OR Apache-2.0"), Ok(true));
        assert_eq!(policy.license_allowed("a", "MIT/Apache-2.0"), Ok(true));
        assert_eq!(policy.license_allowed("a", "GPL-3.0 OR MIT"), Ok(true));
        assert_eq!(policy.license_allowed("a", "GPL-3.0 AND MIT"), Ok(false));
        assert_eq!(
            policy.license_allowed("a", "Apache-2.0 WITH LLVM-exception"),
            Ok(true)
        );
        assert_eq!(
            policy.license_allowed("a", "MIT WITH LLVM-exception"),
            Ok(false)
        );
        assert_eq!(policy.license_allowed("ring", "ISC AND OpenSSL"), Ok(true));
        assert_eq!(
            policy.license_allowed("other", "ISC AND OpenSSL"),
            Ok(false)
        );
        assert!(policy.license_allowed("a", "my own license").is_err());
    }

    #[test]
    fn bad_policies_are_errors_naming_the_key() {
        let err = |text: &str| format!("{:#}", Policy::parse(text).unwrap_err());
        assert!(err("[licenses]\nallow = [\"MTI\"]").contains("\"MTI\" is not an SPDX"));
        assert!(
            err("[[advisories.ignore]]\nid = \"RUSTSEC-2020-0001\"\nreason = \"x\"\nuntil = \"soon\"")
                .contains("until = \"soon\" must be a date")
        );
        assert!(
            err("[[advisories.ignore]]\nid = \"RUSTSEC-2020-0001\"\nreason = \" \"\nuntil = \"2030-01-01\"")
                .contains("reason must say why")
        );
        assert!(err("[licenses]\nalow = []").contains("alow"));
        assert!(err("[advisories]\ndeny_informational = [\"bad\"]").contains("bad"));
    }

    #[test]
    fn dates_parse_strictly() {
        assert_eq!(
            parse_date("2026-02-28").unwrap(),
            Date::from_calendar_date(2026, Month::February, 28).unwrap()
        );
        assert!(parse_date("2026-02-30").is_err());
        assert!(parse_date("2026-13-01").is_err());
        assert!(parse_date("tomorrow").is_err());
    }
}
