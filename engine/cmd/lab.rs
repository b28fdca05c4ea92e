//! `runbook lab`: bring a local lab of real hosts up and down, inspect it, run commands in it.

use super::{EXIT_INVALID, EXIT_OK, print_out, usage_error};
use crate::cli::{LabCommand, LabEtcd, LabShape};
use crate::lab::{self, Flavor, LabError};

pub fn run(cmd: LabCommand) -> u8 {
    let result = match cmd {
        LabCommand::Up { lab, shape } => {
            // The inventory path is the command's data: the only thing on stdout.
            lab::up(&lab.name, &spec(shape)).map(|inventory| format!("{}\n", inventory.display()))
        }
        LabCommand::Drill {
            lab,
            shape,
            keys,
            keep,
            snapshot,
            run_dir,
        } => {
            return super::drill::run(&super::drill::Drill {
                name: lab.name,
                spec: spec(shape),
                keys,
                keep,
                snapshot,
                run_dir,
            });
        }
        LabCommand::Bin { etcd, kubernetes } => {
            let which = match etcd {
                Some(e) if !kubernetes => lab::Binaries::Etcd(flavor(e)),
                _ => lab::Binaries::Kubernetes,
            };
            // The directory is the command's data: the only thing on stdout.
            lab::bin(which).map(|dir| format!("{}\n", dir.display()))
        }
        LabCommand::Down { lab } => lab::down(&lab.name).map(|()| String::new()),
        // The table is the command's data.
        LabCommand::Status { lab } => lab::status(&lab.name),
        // Replaces this process on success: the command's exit status is the exit status.
        LabCommand::Exec { lab, node, command } => Err(lab::exec(&lab.name, &node, &command)),
        LabCommand::Init { node_dir } => lab::init(&node_dir).map(|()| String::new()),
    };
    match result {
        Ok(out) => print_out(&out).err().unwrap_or(EXIT_OK),
        Err(e) => report(e),
    }
}

fn spec(shape: LabShape) -> lab::Spec {
    lab::Spec {
        nodes: shape.nodes,
        flavor: flavor(shape.etcd),
        encryption_config: shape.encryption_config,
    }
}

fn flavor(etcd: LabEtcd) -> Flavor {
    match etcd {
        LabEtcd::V3_4 => Flavor::V3_4,
        LabEtcd::V3_5_1 => Flavor::V3_5_1,
        LabEtcd::V3_5 => Flavor::V3_5,
        LabEtcd::V3_6 => Flavor::V3_6,
    }
}

/// Prints a failure the uv way (`error:`, `Caused by:`, `hint:`) and picks the exit code.
pub(crate) fn report(e: LabError) -> u8 {
    match e {
        // Not root, not Linux, a bad name: exit 2.
        LabError::Usage { what, cause, hint } => usage_error(&what, &cause, hint.as_deref()),
        // Doing it failed: exit 1.
        LabError::Failed { error, hint } => {
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  Caused by: {cause}");
            }
            if let Some(h) = hint {
                eprintln!("  hint: {h}");
            }
            EXIT_INVALID
        }
    }
}
