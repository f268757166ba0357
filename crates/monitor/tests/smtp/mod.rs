//! A real SMTP server for tests: aiosmtpd (PyPI; `scripts/test` installs it into
//! `target/test-venv`) as a child process on a free loopback port, writing what it
//! receives to a maildir. Shared by the monitor's notifier tests and the status
//! page's subscriber tests (`#[path]`-included there).
#![allow(dead_code, clippy::unwrap_used)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// aiosmtpd on a free loopback port, storing what it receives in a maildir.
/// Killed on drop.
pub struct SmtpServer {
    child: Child,
    pub port: u16,
    maildir: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmtpServer {
    /// None when aiosmtpd is missing and skipping is allowed.
    pub fn start() -> Option<Self> {
        let aiosmtpd = find_aiosmtpd()?;
        let dir = tempfile::tempdir().unwrap();
        // aiosmtpd's Maildir creates cur/new/tmp only when the directory is new.
        let maildir = dir.path().join("maildir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let child = Command::new(&aiosmtpd)
            .args(["-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", aiosmtpd.display()));
        let mut server = Self {
            child,
            port,
            maildir,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("aiosmtpd exited at start: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not listen within 15 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(server)
    }

    /// The messages delivered so far as (headers unfolded, body decoded).
    pub fn messages(&self) -> Vec<(String, String)> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.maildir.join("new"))
            .map(|dir| dir.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        files.sort();
        files
            .iter()
            .map(|f| {
                let raw = std::fs::read_to_string(f).unwrap().replace("\r\n", "\n");
                let (headers, body) = raw.split_once("\n\n").unwrap();
                let headers = format!("{}\n", headers.replace("\n ", " ").replace("\n\t", " "));
                let body = if headers
                    .to_ascii_lowercase()
                    .contains("content-transfer-encoding: quoted-printable")
                {
                    decode_quoted_printable(body)
                } else {
                    body.to_owned()
                };
                (headers, body)
            })
            .collect()
    }
}

/// Enough of RFC 2045 quoted-printable for these messages: soft line breaks and `=XX`.
fn decode_quoted_printable(text: &str) -> String {
    let text = text.replace("=\n", "");
    let mut out = Vec::new();
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b == b'=' {
            let hex = [bytes.next().unwrap(), bytes.next().unwrap()];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).unwrap(), 16).unwrap());
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).unwrap()
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// aiosmtpd on PATH (`scripts/test` puts `target/test-venv/bin` there), or in that
/// venv when the test runs by hand.
fn find_aiosmtpd() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-venv/bin");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain([venv])
        .map(|dir| dir.join("aiosmtpd"))
        .find(|candidate| candidate.is_file());
    if found.is_some() {
        return found;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let allow_skip = std::env::var("WARDEN_TEST_ALLOW_SKIP").is_ok_and(|v| v == "1");
    assert!(
        !ci && allow_skip,
        "aiosmtpd is not installed: run scripts/test (it installs it into target/test-venv) \
         or `pip install aiosmtpd`; or set WARDEN_TEST_ALLOW_SKIP=1 outside CI to skip this test"
    );
    eprintln!("skipping: aiosmtpd is not installed");
    None
}
