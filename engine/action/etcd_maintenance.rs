//! `etcd.compact` and `etcd.check_writes`: the two steps around a defrag that a NOSPACE
//! recovery needs — drop old revisions first, prove the cluster takes writes last.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{ArgError, Command, Ctx, Native};

/// Arguments of `etcd.compact` and `etcd.check_writes` (none).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[schemars(rename = "EtcdMaintenanceArgs")]
#[serde(deny_unknown_fields)]
pub struct Args {}

#[derive(Debug, Clone)]
pub struct EtcdCompact;

impl EtcdCompact {
    pub fn new(_args: Args, _ctx: &Ctx) -> Result<Self, ArgError> {
        Ok(EtcdCompact)
    }

    pub fn commands(&self) -> Vec<Command> {
        vec![Command::native(
            Native::Compact,
            "compact the keyspace to the current revision over etcd's API (physical: wait until members applied it)".into(),
        )]
    }
}

#[derive(Debug, Clone)]
pub struct EtcdCheckWrites;

impl EtcdCheckWrites {
    pub fn new(_args: Args, _ctx: &Ctx) -> Result<Self, ArgError> {
        Ok(EtcdCheckWrites)
    }

    pub fn commands(&self) -> Vec<Command> {
        vec![Command::native(
            Native::CheckWrites,
            "put a probe key, read it back from every member, delete it".into(),
        )]
    }
}
