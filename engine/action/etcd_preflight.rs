//! `etcd.preflight`: before touching a cluster, ask every member over etcd's API: health,
//! leader, raft term and index, database size against its quota, alarms, learners.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{ArgError, Command, Ctx, Native};

/// Arguments of `etcd.preflight` (none: every etcd member of the inventory is asked).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[schemars(rename = "EtcdPreflightArgs")]
#[serde(deny_unknown_fields)]
pub struct Args {}

#[derive(Debug, Clone)]
pub struct EtcdPreflight {
    pub members: Vec<String>,
}

impl EtcdPreflight {
    pub fn new(_args: Args, ctx: &Ctx) -> Result<Self, ArgError> {
        Ok(EtcdPreflight {
            members: ctx
                .inventory
                .etcd_members()
                .iter()
                .map(|n| n.name.clone())
                .collect(),
        })
    }

    pub fn commands(&self) -> Vec<Command> {
        vec![Command::native(
            Native::Preflight,
            format!(
                "ask {} over etcd's API: status, leader, alarms (NOSPACE, CORRUPT), learners; fail on any alarm or no leader",
                self.members.join(", ")
            ),
        )]
    }
}
