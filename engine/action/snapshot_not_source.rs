//! `snapshot.not_source`: before a drill restores a snapshot into scratch hosts, prove the
//! hosts are not the cluster the snapshot came from — no node's peer URL is one of the
//! snapshot's members, and no node runs one of the snapshot's members — so a drill pointed
//! at the wrong inventory stops before it stops anything.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{Act, Action, ActionInfo, local_snapshot, args, schema_of, secs, RunCx, Said, ArgError, Command, Ctx, Native};
use crate::executor::BoxFut;

pub static INFO: ActionInfo = ActionInfo {
    name: "snapshot.not_source",
    summary: "refuse hosts that belong to the snapshot's own cluster (by peer URL or running member id): drills touch scratch hosts only",
    default_timeout: secs(120),
    destructive: false,
    idempotent: true,
    schema: schema_of::<Args>,
    parse: |v, ctx| Ok(Action::new(SnapshotNotSource::new(args(v)?, ctx)?)),
};

/// Arguments of `snapshot.not_source`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(rename = "SnapshotNotSourceArgs")]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// The snapshot file on this machine.
    pub snapshot: String,
}

#[derive(Debug, Clone)]
pub struct SnapshotNotSource {
    pub snapshot: String,
    pub members: Vec<String>,
}

impl SnapshotNotSource {
    pub fn new(args: Args, ctx: &Ctx) -> Result<Self, ArgError> {
        Ok(SnapshotNotSource {
            snapshot: local_snapshot(ctx, "snapshot.not_source", args.snapshot)?,
            members: ctx.member_names(),
        })
    }
}

impl Act for SnapshotNotSource {
    fn commands(&self) -> Vec<Command> {
        vec![Command::native(
            self.clone(),
            format!(
                "refuse if any of {} has a peer URL of a member recorded in {}, or runs one of those members",
                self.members.join(", "),
                self.snapshot
            ),
        )]
    }
}

impl Native for SnapshotNotSource {
    fn run<'a>(&'a self, cx: &'a RunCx<'a>) -> BoxFut<'a, Result<Said, String>> {
        Box::pin(async move {
            crate::etcd::members::not_source(
                cx.exec,
                cx.inventory,
                &cx.files.local(&self.snapshot).await?.path,
            )
            .await
            .map(Said::shown)
        })
    }
}
