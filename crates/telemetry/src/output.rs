//! What a command prints on stdout, written so that a closed stdout (`warden deps
//! inventory | head`) ends the command quietly, as it ends any Unix tool, instead of
//! panicking the way `println!` does.
//!
//! SIGPIPE stays ignored (Rust's default): a Warden process also talks to sockets and
//! child processes, and a peer that goes away there must be an error it handles, never
//! a signal that kills it. So the write to stdout reports the broken pipe as
//! [`StdoutClosed`], and the CLI's `main` turns that into a quiet exit.

use std::io::Write;

/// The reader of stdout went away (a pipe into `head`, a closed terminal).
#[derive(Debug, thiserror::Error)]
#[error("stdout was closed by its reader")]
pub struct StdoutClosed;

/// Writes `text` to stdout and flushes it.
///
/// # Errors
/// [`StdoutClosed`] when the reader is gone; any other write error as it is.
pub fn print(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(error) => Err(anyhow::Error::new(error).context("cannot write to stdout")),
    }
}

/// `println!` that returns an error instead of panicking: `outln!("{x}")?`.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::output::print("\n")
    };
    ($($arg:tt)*) => {
        $crate::output::print(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` that returns an error instead of panicking: `out!("{x}")?`.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::print(&format!($($arg)*))
    };
}
