//! Shared helpers for the integration tests: run the real binary from the repository root.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Output of one `runbook` invocation.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn runbook(args: &[&str]) -> Run {
    runbook_in(&root(), args)
}

pub fn runbook_in(dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("runbook runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Compile-time assurance that a run did not crash: a panic exits 101.
pub fn assert_no_panic(r: &Run) {
    assert_ne!(r.code, 101, "runbook panicked:\n{}", r.stderr);
    assert!(
        !r.stderr.contains("panicked at"),
        "runbook panicked:\n{}",
        r.stderr
    );
}
