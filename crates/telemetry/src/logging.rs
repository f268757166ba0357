//! Process-wide `tracing` setup.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber: human-readable on a terminal, one JSON object per
/// line otherwise (for log shippers). The filter comes from `WARDEN_LOG` (then
/// `RUST_LOG`), default `info`. Calling it twice is harmless.
pub fn init() {
    let filter = std::env::var("WARDEN_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if std::io::stderr().is_terminal() {
        builder.try_init()
    } else {
        builder.json().flatten_event(true).try_init()
    };
    // An error only means a subscriber is already installed (tests, embedding).
    drop(result);
}
