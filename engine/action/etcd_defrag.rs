//! `etcd.defrag`: defragment one member. The member blocks reads and writes while it runs,
//! so plans must defrag members one at a time (lint `defrag-not-serial`).

use schemars::JsonSchema;
use serde::Deserialize;

use super::etcdctl::etcdctl;
use super::{ArgError, Command, Ctx, timeout_secs};

/// Arguments of `etcd.defrag`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[schemars(rename = "EtcdDefragArgs")]
#[serde(deny_unknown_fields)]
pub struct Args {}

#[derive(Debug, Clone)]
pub struct EtcdDefrag {
    pub etcdctl: String,
    pub timeout_secs: u64,
}

impl EtcdDefrag {
    pub fn new(_args: Args, ctx: &Ctx) -> Result<Self, ArgError> {
        let node = ctx.require_node("etcd.defrag")?;
        Ok(EtcdDefrag {
            etcdctl: etcdctl(&node.etcd, &[node.client_url()]),
            timeout_secs: timeout_secs(ctx.timeout),
        })
    }

    pub fn commands(&self) -> Vec<Command> {
        vec![Command::Shell(format!(
            "{} defrag --command-timeout={}s",
            self.etcdctl, self.timeout_secs
        ))]
    }
}
