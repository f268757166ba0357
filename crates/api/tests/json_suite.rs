//! JSONTestSuite through the API's own JSON request-parsing layer
//! ([`warden_api::json::parse_json_body`], the path every request body takes).
//!
//! A new version of the JSON library must not change what the API accepts:
//! - every `y_` document is accepted, or refused only by a documented limit (depth);
//! - every `n_` document is refused as a client error (400/422), never a panic;
//! - the outcome of every `i_` (implementation-defined) document is kept in a
//!   snapshot, so a dependency update that changes any answer fails here and names
//!   the files whose answers changed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

use std::path::PathBuf;

use serde_json::value::RawValue;
use warden_api::error::ApiError;
use warden_api::json::{JsonLimits, parse_json_body};

const LIMITS: JsonLimits = JsonLimits {
    max_bytes: 256 * 1024,
    max_depth: 64,
};

fn suite() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/json-test-suite/test_parsing");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("JSONTestSuite not found at {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() > 300,
        "expected the whole suite, found {} files",
        files.len()
    );
    files
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect()
}

/// Parses as the API parses an item's `data` (any JSON value, kept verbatim), and
/// catches panics so that one is reported as such.
fn outcome(bytes: &[u8]) -> Result<Result<(), ApiError>, String> {
    std::panic::catch_unwind(|| parse_json_body::<Box<RawValue>>(bytes, &LIMITS).map(drop))
        .map_err(|_| "panic".to_owned())
}

fn describe(result: &Result<(), ApiError>) -> String {
    match result {
        Ok(()) => "accepted".into(),
        Err(e) => format!("refused {}", e.status().as_u16()),
    }
}

#[test]
fn accepts_every_valid_document_within_the_limits() {
    let mut wrong = Vec::new();
    for (name, bytes) in suite().into_iter().filter(|(n, _)| n.starts_with("y_")) {
        match outcome(&bytes) {
            Ok(Ok(())) => {}
            Ok(Err(ApiError::BadRequest(d))) if d.contains("nested deeper than the limit") => {}
            other => wrong.push(format!("{name}: {other:?}")),
        }
    }
    assert!(
        wrong.is_empty(),
        "valid documents refused:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn refuses_every_invalid_document_as_a_client_error() {
    let mut wrong = Vec::new();
    for (name, bytes) in suite().into_iter().filter(|(n, _)| n.starts_with("n_")) {
        match outcome(&bytes) {
            Ok(Err(ApiError::BadRequest(_) | ApiError::Unprocessable(_))) => {}
            other => wrong.push(format!("{name}: {other:?}")),
        }
    }
    assert!(
        wrong.is_empty(),
        "invalid documents not refused as client errors:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn implementation_defined_answers_are_unchanged() {
    let answers: String = suite()
        .into_iter()
        .filter(|(n, _)| n.starts_with("i_"))
        .map(|(name, bytes)| {
            let answer = match outcome(&bytes) {
                Ok(result) => describe(&result),
                Err(panic) => panic,
            };
            format!("{name}: {answer}\n")
        })
        .collect();
    insta::assert_snapshot!("implementation_defined", answers);
}
