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

/// Arguments of `etcd.defrag_cluster`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[schemars(rename = "EtcdDefragClusterArgs")]
#[serde(deny_unknown_fields)]
pub struct ClusterArgs {}

/// `etcd.defrag_cluster`: every member in turn, followers first, the leader last — an order
/// only known at run time, which is why runbook does it over etcd's API rather than as steps.
#[derive(Debug, Clone)]
pub struct EtcdDefragCluster {
    pub members: Vec<String>,
}

impl EtcdDefragCluster {
    pub fn new(_args: ClusterArgs, ctx: &Ctx) -> Result<Self, ArgError> {
        Ok(EtcdDefragCluster {
            members: ctx.member_names(),
        })
    }

    pub fn commands(&self) -> Vec<super::Command> {
        vec![super::Command::native(
            super::Native::DefragCluster,
            format!(
                "defragment {} over etcd's API one at a time, followers first and the leader last, every member answering a quorum read before the next; then disarm alarms",
                self.members.join(", ")
            ),
        )]
    }
}
