//! `snapshot.distribute`: copy the operator's snapshot to a node and prove the copy is identical there.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{
    Act, Action, ActionInfo, ArgError, Command, Ctx, Native, RunCx, RuntimeValue, Said, args,
    node_path, schema_of, secs,
};
use crate::executor::BoxFut;
use crate::shell::quote;

pub static INFO: ActionInfo = ActionInfo {
    name: "snapshot.distribute",
    summary: "copy a local snapshot to the node and check its sha256 there",
    default_timeout: secs(900),
    destructive: false,
    idempotent: true,
    schema: schema_of::<Args>,
    parse: |v, ctx| Ok(Action::new(SnapshotDistribute::new(args(v)?, ctx)?)),
};

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
}

impl Act for SnapshotDistribute {
    fn commands(&self) -> Vec<Command> {
        vec![
            Command::Shell(format!("mkdir -p -m 0700 {}", quote(self.dest_dir()))),
            Command::native(
                Upload {
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

    fn runtime_values(&self) -> Vec<RuntimeValue> {
        vec![RuntimeValue {
            var: SOURCE_SHA256.to_string(),
            meaning: format!(
                "sha256 of {} on this machine, computed when the step runs",
                self.source
            ),
        }]
    }

    fn env<'a>(&'a self, cx: &'a RunCx<'a>) -> BoxFut<'a, Result<Vec<(String, String)>, String>> {
        Box::pin(async move {
            let digest = cx.files.sha256(&self.source).await?;
            Ok(vec![(SOURCE_SHA256.to_string(), digest)])
        })
    }
}

/// A local file copied to the step's node (mode 0600, written beside `dest` and renamed).
#[derive(Debug)]
struct Upload {
    source: String,
    dest: String,
}

impl Native for Upload {
    fn run<'a>(&'a self, cx: &'a RunCx<'a>) -> BoxFut<'a, Result<Said, String>> {
        Box::pin(async move {
            let node = cx.node("an upload")?;
            let started = std::time::Instant::now();
            cx.exec
                .upload_boxed(node, &cx.files.local(&self.source).await?.path, &self.dest)
                .await
                .map_err(|e| e.0)?;
            Ok(Said::logged(format!(
                "copied {} to {}:{} in {:.2}s",
                self.source,
                node.name,
                self.dest,
                started.elapsed().as_secs_f64()
            )))
        })
    }
}
