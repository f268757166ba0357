//! The JSON request path, hardened: a JSON library is what failed in the outage.
//!
//! [`ApiJson`] replaces axum's `Json` extractor. In order, it checks the content type
//! (415), the body size (413), UTF-8 (400 naming the byte), nesting depth (400 naming
//! the byte), syntax (400 naming line and column), then the shape of the document
//! (422: unknown fields, missing fields, wrong types). Every rejection is a
//! problem+json document, never axum's plain text.

use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Limits applied to every JSON request body.
#[derive(Debug, Clone, Copy)]
pub struct JsonLimits {
    /// Largest body in bytes.
    pub max_bytes: usize,
    /// Deepest nesting of arrays and objects.
    pub max_depth: usize,
}

/// A JSON request body that passed every check in [`parse_json_body`].
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
    JsonLimits: axum::extract::FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limits: JsonLimits = axum::extract::FromRef::from_ref(state);
        check_content_type(request.headers().get(header::CONTENT_TYPE))?;
        let bytes = read_body(request, limits.max_bytes).await?;
        parse_json_body(&bytes, &limits).map(ApiJson)
    }
}

/// Bytes of an oversized body read and discarded before answering 413, so that a
/// client that is still sending gets the 413 rather than a broken pipe. Beyond this
/// (or a declared length beyond it) the answer is immediate and the connection closes.
const DRAIN_LIMIT: usize = 1024 * 1024;

/// Reads the body into memory, refusing more than `max` bytes with 413.
async fn read_body(request: Request, max: usize) -> Result<Vec<u8>, ApiError> {
    use http_body_util::BodyExt as _;
    let too_large = || ApiError::PayloadTooLarge { limit: max };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > max.saturating_add(DRAIN_LIMIT)) {
        return Err(too_large());
    }
    let mut body = request.into_body();
    let mut buffer = Vec::with_capacity(declared.unwrap_or(0).min(max));
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| ApiError::BadRequest(format!("could not read the request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.len());
        if seen > max.saturating_add(DRAIN_LIMIT) {
            break;
        }
        if seen <= max {
            buffer.extend_from_slice(&data);
        }
    }
    if seen > max {
        return Err(too_large());
    }
    Ok(buffer)
}

fn check_content_type(value: Option<&axum::http::HeaderValue>) -> Result<(), ApiError> {
    let unsupported = |found: &str| {
        ApiError::UnsupportedMediaType(format!(
            "expected `Content-Type: application/json`, found {found}"
        ))
    };
    let Some(value) = value else {
        return Err(unsupported("no Content-Type header"));
    };
    let text = value
        .to_str()
        .map_err(|_| unsupported("an unreadable Content-Type"))?;
    let mut parts = text.split(';').map(str::trim);
    let essence = parts.next().unwrap_or_default().to_ascii_lowercase();
    let is_json = essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    if !is_json {
        return Err(unsupported(&format!("`{text}`")));
    }
    for param in parts {
        if let Some((name, value)) = param.split_once('=')
            && name.trim().eq_ignore_ascii_case("charset")
            && !value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        {
            return Err(unsupported(&format!("`{text}` (only UTF-8 is accepted)")));
        }
    }
    Ok(())
}

/// Parses a request body already read into memory. Public so that tests can run
/// whole corpora (JSONTestSuite) through exactly the path requests take.
pub fn parse_json_body<T: DeserializeOwned>(
    bytes: &[u8],
    limits: &JsonLimits,
) -> Result<T, ApiError> {
    if bytes.len() > limits.max_bytes {
        return Err(ApiError::PayloadTooLarge {
            limit: limits.max_bytes,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        ApiError::BadRequest(format!(
            "request body is not valid UTF-8 at byte {}",
            e.valid_up_to()
        ))
    })?;
    check_depth(text.as_bytes(), limits.max_depth)?;
    serde_json::from_str(text).map_err(|e| {
        use serde_json::error::Category;
        let place = format!("line {} column {}", e.line(), e.column());
        match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::BadRequest(format!("malformed JSON at {place}: {}", strip_position(&e)))
            }
            Category::Data => ApiError::Unprocessable(format!(
                "invalid request body at {place}: {}",
                strip_position(&e)
            )),
        }
    })
}

/// serde_json appends " at line L column C" to its messages; we say it ourselves.
fn strip_position(error: &serde_json::Error) -> String {
    let message = error.to_string();
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message,
    }
}

/// Rejects documents nested deeper than `max_depth` before any parser builds them.
///
/// Written by hand because serde_json's only depth guard is a fixed recursion limit
/// of 128 that cannot be configured. This scan is a single pass over the bytes that
/// skips string contents (including escaped quotes); syntax errors are left to the
/// parser that runs next.
fn check_depth(bytes: &[u8], max_depth: usize) -> Result<(), ApiError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (offset, &byte) in bytes.iter().enumerate() {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return Err(ApiError::BadRequest(format!(
                        "JSON nested deeper than the limit of {max_depth} levels at byte {offset}"
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// The fault switch (`--chaos-leak-bytes-per-request`): leaks `bytes` bytes, the way
/// the outage's JSON library leaked on every request it handled; the router calls it
/// once per `/v1` request when the switch is on. The buffer is filled so that its
/// pages are touched and show up in RSS as well as in the heap, like a real leak.
#[inline(never)]
pub(crate) fn chaos_leak(bytes: usize) {
    std::mem::forget(vec![0xA5_u8; bytes]);
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: JsonLimits = JsonLimits {
        max_bytes: 1024,
        max_depth: 4,
    };

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        #[allow(dead_code)]
        a: serde_json::Value,
    }

    fn parse(text: &[u8]) -> Result<Doc, ApiError> {
        parse_json_body(text, &LIMITS)
    }

    #[test]
    fn depth_counts_only_structure_outside_strings() {
        assert!(parse(br#"{"a": [[["x"]]]}"#).is_ok());
        assert!(parse(br#"{"a": "[[[[[[[[[[\"{{{{"}"#).is_ok());
        let err = parse(br#"{"a": [[[[1]]]]}"#).unwrap_err();
        assert!(
            matches!(err, ApiError::BadRequest(ref d) if d.contains("at byte 9")),
            "{err}"
        );
    }

    #[test]
    fn syntax_errors_name_the_position() {
        let err = parse(b"{\"a\": 1,\n}").unwrap_err();
        assert!(
            matches!(err, ApiError::BadRequest(ref d) if d.contains("line 2 column 1")),
            "{err}"
        );
    }

    #[test]
    fn non_utf8_names_the_byte() {
        let err = parse(b"{\"a\": \"\xff\"}").unwrap_err();
        assert!(
            matches!(err, ApiError::BadRequest(ref d) if d.contains("byte 7")),
            "{err}"
        );
    }

    #[test]
    fn unknown_fields_and_wrong_shapes_are_unprocessable() {
        assert!(matches!(
            parse(br#"{"a": 1, "b": 2}"#),
            Err(ApiError::Unprocessable(_))
        ));
        assert!(matches!(parse(br#"[]"#), Err(ApiError::Unprocessable(_))));
    }

    #[test]
    fn content_types() {
        use axum::http::HeaderValue;
        let ok = |v: &'static str| check_content_type(Some(&HeaderValue::from_static(v))).is_ok();
        assert!(ok("application/json"));
        assert!(ok("application/json; charset=utf-8"));
        assert!(ok("application/merge-patch+json"));
        assert!(!ok("text/plain"));
        assert!(!ok("application/json; charset=latin1"));
        assert!(check_content_type(None).is_err());
    }
}
