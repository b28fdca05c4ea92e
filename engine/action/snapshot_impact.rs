//! `snapshot.impact`: before a restore stops anything, what it would roll back — the snapshot
//! against the live cluster, by Kubernetes resource ("rolls back 14 deployments, removes 212
//! events created since ..."). Informational: a cluster that does not answer (the outage the
//! restore is for) is said, not failed.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{
    Act, Action, ActionInfo, local_snapshot, ArgError, Command, Ctx, Native, RunCx, Said, args, schema_of, secs,
};
use crate::executor::BoxFut;
use crate::shell::quote;
use crate::snapshot::contents::{Contents, Diff, render};

pub static INFO: ActionInfo = ActionInfo {
    name: "snapshot.impact",
    summary: "what restoring the snapshot would roll back, by Kubernetes resource, against the live cluster (read over etcd's API); never fails on an unreachable cluster",
    default_timeout: secs(600),
    destructive: false,
    idempotent: true,
    schema: schema_of::<Args>,
    parse: |v, ctx| Ok(Action::new(SnapshotImpact::new(args(v)?, ctx)?)),
};

/// Arguments of `snapshot.impact`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(rename = "SnapshotImpactArgs")]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// The snapshot on this machine, or s3://bucket/key.
    pub snapshot: String,
}

#[derive(Debug, Clone)]
pub struct SnapshotImpact {
    pub snapshot: String,
    pub members: Vec<String>,
}

impl SnapshotImpact {
    pub fn new(args: Args, ctx: &Ctx) -> Result<Self, ArgError> {
        Ok(SnapshotImpact {
            snapshot: local_snapshot(ctx, "snapshot.impact", args.snapshot)?,
            members: ctx.member_names(),
        })
    }
}

impl Act for SnapshotImpact {
    fn commands(&self) -> Vec<Command> {
        vec![Command::native(
            self.clone(),
            format!(
                "compare every key of {} with the live cluster (read over etcd's API from the first of {} that answers): what the restore rolls back, by resource",
                quote(&self.snapshot),
                self.members.join(", ")
            ),
        )]
    }
}

impl Native for SnapshotImpact {
    fn run<'a>(&'a self, cx: &'a RunCx<'a>) -> BoxFut<'a, Result<Said, String>> {
        Box::pin(async move {
            let local = cx.files.local(&self.snapshot).await?.path;
            let older = tokio::task::spawn_blocking(move || Contents::of_file(&local))
                .await
                .map_err(|e| format!("reading {}: {e}", self.snapshot))?
                .map_err(|e| e.to_string())?;
            let members = cx.inventory.etcd_members();
            match crate::etcd::cluster_contents(cx.exec, &members).await {
                Ok((member, live)) => {
                    let d = Diff::of(&older, &live);
                    Ok(Said::shown(format!(
                        "snapshot revision {}, cluster revision {} (read from {member})\n{}",
                        d.older_revision,
                        d.newer_revision,
                        render(&d, false).trim_end()
                    )))
                }
                Err(e) => Ok(Said::shown(format!(
                    "the cluster does not answer ({e}): nothing to compare; the restore brings back the snapshot's {} keys at revision {}",
                    older.keys.len(),
                    older.revision
                ))),
            }
        })
    }
}
