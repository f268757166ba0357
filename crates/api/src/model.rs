//! The JSON documents of the API, and the parsing that makes invalid values
//! unrepresentable past the handler's first line.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::db::{ItemRow, UserRow};
use crate::error::ApiError;

/// Email and password, to register or to log in.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// An email address; compared case-insensitively.
    #[schema(example = "ada@example.com", format = Email)]
    pub email: String,
    /// 12 to 128 characters.
    #[schema(
        example = "correct horse battery staple",
        min_length = 12,
        max_length = 128
    )]
    pub password: String,
}

/// An email address that passed syntax checks, lower-cased.
#[derive(Debug, Clone)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        if raw.len() > 254 || !email_address::EmailAddress::is_valid(raw) {
            return Err(ApiError::Unprocessable(format!(
                "`email` is not a valid email address: {raw:?}"
            )));
        }
        Ok(Self(raw.to_lowercase()))
    }

    /// For logins: the same normalisation, without rejecting (an invalid address
    /// simply matches no account).
    pub fn normalise(raw: &str) -> String {
        raw.to_lowercase()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A new password that satisfies the length policy (12–128 characters).
pub struct NewPassword(String);

impl NewPassword {
    pub fn parse(raw: String) -> Result<Self, ApiError> {
        let chars = raw.chars().count();
        if !(12..=128).contains(&chars) {
            return Err(ApiError::Unprocessable(format!(
                "`password` must be 12 to 128 characters long, got {chars}"
            )));
        }
        Ok(Self(raw))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A registered user.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub id: i64,
    pub email: String,
    /// RFC 3339 time of registration.
    #[schema(format = DateTime)]
    pub created_at: String,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        Self {
            id: row.id,
            email: row.email,
            created_at: rfc3339(row.created_at),
        }
    }
}

/// A session: present `token` as `Authorization: Bearer TOKEN`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Session {
    /// 256 random bits, URL-safe base64. Shown once; the server keeps only its hash.
    pub token: String,
    /// RFC 3339 time after which the token is refused.
    #[schema(format = DateTime)]
    pub expires_at: String,
}

/// The content of an item, to create or replace it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemInput {
    /// 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200, example = "groceries")]
    pub title: String,
    /// Any JSON value, stored and returned exactly as sent, provided every JSON
    /// parser can read it back (RFC 8259, I-JSON RFC 7493): strings are valid
    /// Unicode, so no `\uD800`-`\uDFFF` escape outside a surrogate pair; numbers are
    /// finite IEEE 754 doubles (`1e400` is not) of at most 100 characters. Anything
    /// else is refused with 400 naming the byte. Integers beyond ±(2^53−1) are kept
    /// as sent but many clients (JavaScript) read them rounded: send such ids as
    /// strings.
    #[schema(value_type = serde_json::Value)]
    pub data: Box<RawValue>,
}

/// An item title that satisfies the length policy.
pub struct Title(String);

impl Title {
    pub fn parse(raw: String) -> Result<Self, ApiError> {
        let chars = raw.chars().count();
        if raw.trim().is_empty() || chars > 200 {
            return Err(ApiError::Unprocessable(format!(
                "`title` must be 1 to 200 characters and not blank, got {chars}"
            )));
        }
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A stored item.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Item {
    pub id: i64,
    pub title: String,
    #[schema(value_type = serde_json::Value)]
    pub data: Box<RawValue>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl TryFrom<ItemRow> for Item {
    type Error = ApiError;

    fn try_from(row: ItemRow) -> Result<Self, ApiError> {
        let data = RawValue::from_string(row.data)
            .map_err(|e| anyhow::anyhow!("item {} holds invalid JSON: {e}", row.id))?;
        Ok(Self {
            id: row.id,
            title: row.title,
            data,
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
        })
    }
}

/// One page of items, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ItemPage {
    pub items: Vec<Item>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Query parameters of the item list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Items per page, 1 to 100. [default: 20]
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Health of the process or of its dependencies.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: String,
}

/// Milliseconds since the epoch as RFC 3339 (UTC).
pub fn rfc3339(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
