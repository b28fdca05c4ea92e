//! `etcd.verify_cluster`: after a restore, prove over etcd's own API that the cluster is the
//! one the inventory describes and holds the snapshot: member list, health, one cluster ID,
//! HashKV agreement, revision and key count against the snapshot.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{ArgError, Command, Ctx, Native};
use crate::shell::quote;

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

    pub fn commands(&self) -> Vec<Command> {
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
            Native::VerifyCluster {
                snapshot: self.snapshot.clone(),
                bump_revision: self.bump_revision,
            },
            text,
        )]
    }
}
