//! `etcd.verify_cluster`: after a restore, prove over etcd's own API that the cluster is the
//! one the inventory describes and holds the snapshot: member list, health, one cluster ID,
//! HashKV agreement, revision and key count against the snapshot.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{Act, Action, ActionInfo, args, schema_of, secs, RunCx, Said, ArgError, Command, Ctx, Native};
use crate::executor::BoxFut;
use crate::shell::quote;

pub static INFO: ActionInfo = ActionInfo {
    name: "etcd.verify_cluster",
    summary: "check members, health and HashKV agreement across the cluster",
    default_timeout: secs(120),
    destructive: false,
    idempotent: true,
    schema: schema_of::<Args>,
    parse: |v, ctx| Ok(Action::new(EtcdVerifyCluster::new(args(v)?, ctx)?)),
};

/// Arguments of `etcd.verify_cluster`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[schemars(rename = "EtcdVerifyClusterArgs")]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// The snapshot (on this machine) the cluster was restored from: the cluster's revision
    /// must be at least its revision (plus `bump_revision`) and its key count must match.
    #[serde(default)]
    pub snapshot: Option<String>,
    /// The `--bump-revision` the restore applied (0: none).
    #[serde(default)]
    pub bump_revision: u64,
}

#[derive(Debug, Clone)]
pub struct EtcdVerifyCluster {
    pub snapshot: Option<String>,
    pub bump_revision: u64,
    pub members: Vec<String>,
}

impl EtcdVerifyCluster {
    pub fn new(args: Args, ctx: &Ctx) -> Result<Self, ArgError> {
        if let Some(s) = &args.snapshot
            && (s.trim().is_empty() || s.chars().any(char::is_control))
        {
            return Err(ArgError::field(
                "snapshot",
                "`snapshot` is empty or contains a control character",
            ));
        }
        Ok(EtcdVerifyCluster {
            snapshot: args.snapshot,
            bump_revision: args.bump_revision,
            members: ctx.member_names(),
        })
    }
}

impl Act for EtcdVerifyCluster {
    fn commands(&self) -> Vec<Command> {
        let mut text = format!(
            "check over etcd's API on {}: member list equals the inventory, every member answers a quorum read, one cluster ID, HashKV equal at one revision",
            self.members.join(", ")
        );
        if let Some(s) = &self.snapshot {
            text.push_str(&format!(
                ", revision at least {}'s{}, its key count",
                quote(s),
                if self.bump_revision > 0 {
                    format!(" + {}", self.bump_revision)
                } else {
                    String::new()
                }
            ));
        }
        vec![Command::native(
            self.clone(),
            text,
        )]
    }
}

impl Native for EtcdVerifyCluster {
    fn run<'a>(&'a self, cx: &'a RunCx<'a>) -> BoxFut<'a, Result<Said, String>> {
        Box::pin(async move {
            let snapshot = match &self.snapshot {
                Some(s) => Some(cx.files.local(s).await?.path),
                None => None,
            };
            crate::etcd::verify::verify_cluster(
                cx.exec,
                cx.inventory,
                snapshot.as_deref(),
                self.bump_revision,
            )
            .await
            .map(Said::shown)
        })
    }
}
