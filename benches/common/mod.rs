//! Helpers shared by the lab benches: run the built binary, fail loudly with its stderr.

#![allow(dead_code)]

use std::process::{Command, Stdio};

pub fn runbook() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_runbook"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1");
    c
}

pub fn ok(c: &mut Command, what: &str) -> Vec<u8> {
    let out = c.stdin(Stdio::null()).output().expect(what);
    assert!(
        out.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs a shell script inside a lab node.
pub fn in_node(lab: &str, node: &str, script: &str) -> Vec<u8> {
    ok(
        runbook().args(["lab", "exec", "--name", lab, node, "--", "sh", "-c", script]),
        script,
    )
}
