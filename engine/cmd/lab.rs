//! `runbook lab`: bring a local lab of real hosts up and down, inspect it, run commands in it.

use crate::cli::LabCommand;

pub fn run(cmd: LabCommand) -> u8 {
    let _ = cmd;
    super::usage_error("`runbook lab` is not built yet", &"work in progress", None)
}
