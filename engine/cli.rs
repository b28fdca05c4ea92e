//! Command-line types (clap). Behaviour lives in `cmd/`; this file only declares the interface.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::graph::render::PlanFormat;

#[derive(Debug, Parser)]
#[command(
    name = "runbook",
    version,
    about = "Declarative runbooks for etcd: backup, verify, restore, defrag — compiled, linted, reviewed",
    after_help = "Examples:\n  runbook validate plans/etcd-restore-ha.yaml -i examples/kubeadm-ha-3.yaml --set snapshot=/backups/etcd.db\n  runbook plan plans/etcd-restore-ha.yaml -i examples/kubeadm-ha-3.yaml --set snapshot=/backups/etcd.db\n  runbook schema plan > schemas/plan.schema.json"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a plan against an inventory: schema, references, templates and etcd safety rules.
    #[command(
        after_help = "Exit status: 0 valid, 1 invalid, 2 usage error or unreadable input.\n\nExample:\n  runbook validate plans/etcd-restore-ha.yaml -i examples/kubeadm-ha-3.yaml --set snapshot=/backups/etcd.db --deny-warnings"
    )]
    Validate {
        #[command(flatten)]
        input: PlanInput,
        /// Output format.
        #[arg(long, value_enum, default_value_t = DiagFormat::Text)]
        format: DiagFormat,
        /// Treat warnings as errors.
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Compile a plan into the ordered step graph: every command, on every node, in order.
    #[command(
        after_help = "Example:\n  runbook plan plans/etcd-restore-ha.yaml -i examples/kubeadm-ha-3.yaml --set snapshot=/backups/etcd.db --format json --out restore.plan.json"
    )]
    Plan {
        #[command(flatten)]
        input: PlanInput,
        /// Output format.
        #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
        format: PlanFormat,
        /// Write to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Print the JSON Schema (draft-07) of plans or inventories, for editors and CI.
    #[command(after_help = "Example:\n  runbook schema inventory > schemas/inventory.schema.json")]
    Schema {
        #[arg(value_enum)]
        kind: SchemaKind,
    },
}

/// The inputs of a compile, shared by `validate` and `plan`.
#[derive(Debug, Args)]
pub struct PlanInput {
    /// The plan file (YAML).
    pub plan: PathBuf,
    /// The inventory file (YAML).
    #[arg(short = 'i', long = "inventory", value_name = "INVENTORY")]
    pub inventory: PathBuf,
    /// Set a plan parameter (repeatable). The value is taken literally.
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_assignment)]
    pub set: Vec<(String, String)>,
    /// Set a plan parameter to the contents of a file (repeatable).
    #[arg(long = "set-file", value_name = "NAME=PATH", value_parser = parse_assignment)]
    pub set_file: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiagFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaKind {
    Plan,
    Inventory,
}

fn parse_assignment(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected NAME=VALUE, got {s:?}")),
    }
}
