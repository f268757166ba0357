//! Records the build's identity (git commit, Cargo.lock SHA-256) for
//! `warden_build_info`, which ties a memory curve in production to a dependency set.

use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let lockfile = root.join("Cargo.lock");
    println!("cargo:rerun-if-changed={}", lockfile.display());
    println!(
        "cargo:rerun-if-changed={}",
        root.join(".git/HEAD").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        root.join(".git/refs/heads").display()
    );
    println!("cargo:rerun-if-env-changed=WARDEN_GIT_COMMIT");

    let lock_sha = std::fs::read(&lockfile)
        .map(|bytes| {
            Sha256::digest(bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        })
        .unwrap_or_else(|_| "unknown".into());
    let commit = std::env::var("WARDEN_GIT_COMMIT").ok().or_else(|| {
        Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(&root)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_owned())
    });
    println!("cargo:rustc-env=WARDEN_LOCKFILE_SHA256={lock_sha}");
    println!(
        "cargo:rustc-env=WARDEN_GIT_COMMIT={}",
        commit.unwrap_or_else(|| "unknown".into())
    );
}
