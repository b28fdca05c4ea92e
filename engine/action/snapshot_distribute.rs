//! `snapshot.distribute`: copy the operator's snapshot to a node and prove the copy is identical there.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{ArgError, Command, Ctx, Native, RuntimeValue, node_path};
use crate::shell::quote;

/// Arguments of `snapshot.distribute`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(rename = "SnapshotDistributeArgs")]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// The snapshot on the operator's machine.
    pub source: String,
    /// Where to put it on the node (its directory is created, mode 0700; the file is 0600).
    pub dest: String,
}

#[derive(Debug, Clone)]
pub struct SnapshotDistribute {
    pub source: String,
    pub dest: String,
    pub node: String,
}

/// The variable the executor sets to the sha256 of the local source before the check runs.
pub const SOURCE_SHA256: &str = "RUNBOOK_SOURCE_SHA256";

impl SnapshotDistribute {
    pub fn new(args: Args, ctx: &Ctx) -> Result<Self, ArgError> {
        let node = ctx.require_node("snapshot.distribute")?;
        node_path("dest", &args.dest)?;
        if args.dest.ends_with('/') {
            return Err(
                ArgError::field("dest", "`dest` must name a file, not a directory")
                    .hint("e.g. /var/lib/runbook/snapshots/snapshot.db"),
            );
        }
        if args.source.trim().is_empty() || args.source.chars().any(char::is_control) {
            return Err(ArgError::field(
                "source",
                "`source` is empty or contains a control character",
            ));
        }
        Ok(SnapshotDistribute {
            source: args.source,
            dest: args.dest,
            node: node.name.clone(),
        })
    }

    fn dest_dir(&self) -> &str {
        match self.dest.rfind('/') {
            Some(0) | None => "/",
            Some(i) => &self.dest[..i],
        }
    }

    pub fn commands(&self) -> Vec<Command> {
        vec![
            Command::Shell(format!("mkdir -p -m 0700 {}", quote(self.dest_dir()))),
            Command::native(
                Native::Upload {
                    source: self.source.clone(),
                    dest: self.dest.clone(),
                },
                format!(
                    "copy {} (this machine) to {}:{} over SFTP, mode 0600",
                    quote(&self.source),
                    self.node,
                    quote(&self.dest)
                ),
            ),
            Command::Shell(format!(
                "test \"$(sha256sum < {d} | cut -d' ' -f1)\" = \"${SOURCE_SHA256}\" || {{ echo {d}: sha256 differs from the source >&2; exit 1; }}",
                d = quote(&self.dest)
            )),
        ]
    }

    pub fn runtime_values(&self) -> Vec<RuntimeValue> {
        vec![RuntimeValue {
            var: SOURCE_SHA256.to_string(),
            meaning: format!(
                "sha256 of {} on this machine, computed when the step runs",
                self.source
            ),
        }]
    }
}
