//! The JSON request path, hardened: a JSON library is what failed in the outage.
//!
//! [`ApiJson`] replaces axum's `Json` extractor. In order, it checks the content type
//! (415), the body size (413), UTF-8 (400 naming the byte), nesting depth, lone
//! surrogates and numbers beyond a double (400 naming the byte: what no parser can
//! read back, see [`check_document`]), syntax (400 naming line and column), then the
//! shape of the document (422: unknown fields, missing fields, wrong types). Every rejection is a
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
    check_document(text.as_bytes(), limits.max_depth)?;
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

/// The longest number literal accepted. A double needs at most 17 significant digits
/// and a 3-digit exponent; 100 characters leave room for any way of writing one,
/// while a literal of thousands of digits is refused by some parsers outright
/// (Python reads at most 4300 digits into an integer).
pub const MAX_NUMBER_CHARS: usize = 100;

/// Rejects, before any parser builds the document, what the parser would build and
/// other parsers could not read back (RFC 8259 §§6 and 8.2; I-JSON, RFC 7493 §2):
///
/// - nesting deeper than `max_depth` (serde_json's only depth guard is a fixed
///   recursion limit of 128 that cannot be configured);
/// - a `\uD800`-`\uDFFF` escape that is not half of a surrogate pair: it encodes no
///   character, so parsers refuse it, replace it or keep an invalid string (item data
///   is kept verbatim, so it would be echoed to every client);
/// - a number that overflows an IEEE 754 double (`1e400`: infinity, which JSON cannot
///   express, or an error) or is longer than [`MAX_NUMBER_CHARS`].
///
/// One pass over the bytes that skips string contents except escapes. Syntax errors
/// are left to the parser that runs next; every refusal here names the byte.
fn check_document(bytes: &[u8], max_depth: usize) -> Result<(), ApiError> {
    let mut depth = 0usize;
    let mut offset = 0usize;
    while let Some(&byte) = bytes.get(offset) {
        offset = match byte {
            b'"' => skip_string(bytes, offset)?,
            b'-' | b'0'..=b'9' => skip_number(bytes, offset)?,
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return Err(ApiError::BadRequest(format!(
                        "JSON nested deeper than the limit of {max_depth} levels at byte {offset}"
                    )));
                }
                offset + 1
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                offset + 1
            }
            _ => offset + 1,
        };
    }
    Ok(())
}

/// The UTF-16 code unit of the `\uXXXX` escape at `at`, if there is one.
fn unicode_escape(bytes: &[u8], at: usize) -> Option<u16> {
    let escape = bytes.get(at..at.checked_add(6)?)?;
    let hex = escape.strip_prefix(b"\\u")?;
    u16::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

/// Checks the string that starts at the quote at `start`; returns the offset after
/// its closing quote (or the end of the body, left to the parser).
fn skip_string(bytes: &[u8], start: usize) -> Result<usize, ApiError> {
    let mut offset = start + 1;
    while let Some(&byte) = bytes.get(offset) {
        match byte {
            b'"' => return Ok(offset + 1),
            b'\\' => match unicode_escape(bytes, offset) {
                Some(high @ 0xD800..=0xDBFF) => match unicode_escape(bytes, offset + 6) {
                    Some(0xDC00..=0xDFFF) => offset += 12,
                    _ => return Err(lone_surrogate(high, offset)),
                },
                Some(low @ 0xDC00..=0xDFFF) => return Err(lone_surrogate(low, offset)),
                Some(_) => offset += 6,
                // Any other escape is two bytes; a bad one is the parser's to report.
                None => offset += 2,
            },
            _ => offset += 1,
        }
    }
    Ok(bytes.len())
}

fn lone_surrogate(unit: u16, offset: usize) -> ApiError {
    ApiError::BadRequest(format!(
        "lone UTF-16 surrogate `\\u{unit:04X}` in a JSON string at byte {offset}: it encodes \
         no character, so JSON parsers refuse or alter it (RFC 8259 section 8.2); send the \
         character itself or a complete surrogate pair"
    ))
}

/// Checks the number that starts at `start`; returns the offset after it.
fn skip_number(bytes: &[u8], start: usize) -> Result<usize, ApiError> {
    let rest = bytes.get(start..).unwrap_or_default();
    let len = rest
        .iter()
        .take_while(|b| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
        .count();
    if len > MAX_NUMBER_CHARS {
        return Err(ApiError::BadRequest(format!(
            "JSON number of {len} characters at byte {start}: at most {MAX_NUMBER_CHARS} are \
             accepted, since numbers must fit an IEEE 754 double to be read back alike by \
             every parser (RFC 7493 section 2.2)"
        )));
    }
    let literal = std::str::from_utf8(rest.get(..len).unwrap_or_default()).unwrap_or_default();
    // Not a number Rust reads (`-`, `1e`): a syntax error for the parser to report.
    if let Ok(value) = literal.parse::<f64>()
        && value.is_infinite()
    {
        return Err(ApiError::BadRequest(format!(
            "JSON number `{literal}` at byte {start} is beyond the range of an IEEE 754 double \
             (about 1.8e308): parsers read it as infinity, which JSON cannot express, or \
             refuse it (RFC 7493 section 2.2)"
        )));
    }
    Ok(start + len)
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

    fn refused(text: &str) -> String {
        match parse(text.as_bytes()) {
            Err(ApiError::BadRequest(detail)) => detail,
            other => panic!("{text:.60}: expected 400, got {other:?}"),
        }
    }

    #[test]
    fn lone_surrogates_are_refused_pairs_accepted() {
        for (text, unit, byte) in [
            (r#"{"a": "\ud800"}"#, "D800", 7),
            (r#"{"a": "x\uDBFFy"}"#, "DBFF", 8),
            (r#"{"a": "\udc00\ud800"}"#, "DC00", 7),
            (r#"{"a": "\ud800\u0041"}"#, "D800", 7),
            (r#"{"a": "\ud800\n"}"#, "D800", 7),
            (r#"{"a": {"\udfff": 1}}"#, "DFFF", 8),
            (r#"{"a": ["\\", "\ud800"]}"#, "D800", 14),
        ] {
            let detail = refused(text);
            assert!(
                detail.contains(&format!("`\\u{unit}`"))
                    && detail.contains(&format!("at byte {byte}")),
                "{text}: {detail}"
            );
        }
        for ok in [
            r#"{"a": "\ud83d\ude00"}"#,
            r#"{"a": "\uD834\uDD1E and \u00e9 \\ud800"}"#,
            r#"{"a": "\ufffe \" [{ 1e400 \\ud800"}"#,
        ] {
            assert!(parse(ok.as_bytes()).is_ok(), "{ok}");
        }
    }

    #[test]
    fn numbers_must_fit_a_double() {
        for (text, what) in [
            (r#"{"a": 1e400}"#, "`1e400` at byte 6"),
            (r#"{"a": [-1.5E+309]}"#, "`-1.5E+309` at byte 7"),
            (r#"{"a": 123123e100000}"#, "beyond the range"),
        ] {
            let detail = refused(text);
            assert!(detail.contains(what), "{text}: {detail}");
        }
        let long = format!(r#"{{"a": {}}}"#, "7".repeat(1000));
        let detail = refused(&long);
        assert!(detail.contains("1000 characters at byte 6"), "{detail}");
        let long_fraction = format!(r#"{{"a": 0.{}}}"#, "1".repeat(99));
        assert!(refused(&long_fraction).contains("101 characters"));
        for ok in [
            "1.7976931348623157e308",
            "-0",
            "1e-400",
            "12345678901234567890123456789",
            "0.1000000000000000055511151231257827",
        ] {
            let text = format!(r#"{{"a": {ok}}}"#);
            assert!(parse(text.as_bytes()).is_ok(), "{ok}");
        }
        // Digits inside strings are text.
        let text = format!(r#"{{"a": "1e400 {}"}}"#, "9".repeat(200));
        assert!(parse(text.as_bytes()).is_ok());
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
