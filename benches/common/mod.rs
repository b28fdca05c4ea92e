//! Helpers shared by the lab benches: run the built binary, fail loudly with its stderr.

#![allow(dead_code)]

use std::path::Path;
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

/// A field of a lab's inventory by JSON pointer (`/ssh/config_file`, `/nodes/0/address`): the
/// file is read as YAML, as the engine reads it, not scraped line by line.
pub fn inventory_field(inventory: &Path, pointer: &str) -> String {
    let text = std::fs::read_to_string(inventory).expect("the lab inventory");
    let value: serde_json::Value =
        serde_saphyr::from_str(&text).expect("the lab inventory is YAML");
    value
        .pointer(pointer)
        .and_then(|v| v.as_str())
        .unwrap_or_else(|| panic!("{pointer} in the lab inventory"))
        .to_string()
}
