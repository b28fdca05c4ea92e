//! `etcd.defrag`: defragment one member. The member blocks reads and writes while it runs,
//! so plans must defrag members one at a time (lint `defrag-not-serial`).

use schemars::JsonSchema;
use serde::Deserialize;

use super::etcdctl::etcdctl;
use crate::executor::BoxFut;
use crate::inventory::model::Node;
use super::{Native, RunCx, Said, Tool, Act, Action, ActionInfo, args, schema_of, secs, ArgError, Command, Ctx, timeout_secs};

pub static DEFRAG: ActionInfo = ActionInfo {
    name: "etcd.defrag",
    summary: "defragment one member's backend",
    default_timeout: secs(600),
    destructive: false,
    idempotent: true,
    schema: schema_of::<Args>,
    parse: |v, ctx| Ok(Action::new(EtcdDefrag::new(args(v)?, ctx)?)),
};

pub static CLUSTER: ActionInfo = ActionInfo {
    name: "etcd.defrag_cluster",
    summary: "defragment every member in turn over etcd's API, followers first and the leader last, with a health gate; then disarm alarms",
    default_timeout: secs(1800),
    destructive: false,
    idempotent: true,
    schema: schema_of::<ClusterArgs>,
    parse: |v, ctx| Ok(Action::new(EtcdDefragCluster::new(args(v)?, ctx)?)),
};

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
}

impl Act for EtcdDefrag {
    fn tools(&self, node: &Node) -> Vec<Tool> {
        vec![Tool::etcdctl(node)]
    }

    fn commands(&self) -> Vec<Command> {
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
}

impl Act for EtcdDefragCluster {
    fn commands(&self) -> Vec<Command> {
        vec![Command::native(
            self.clone(),
            format!(
                "defragment {} over etcd's API one at a time, followers first and the leader last, every member answering a quorum read before the next; then disarm alarms",
                self.members.join(", ")
            ),
        )]
    }
}

impl Native for EtcdDefragCluster {
    fn run<'a>(&'a self, cx: &'a RunCx<'a>) -> BoxFut<'a, Result<Said, String>> {
        Box::pin(async move {
            crate::etcd::defrag::defrag_cluster(
                cx.exec,
                cx.inventory,
                std::time::Duration::from_secs(60),
            )
            .await
            .map(Said::shown)
        })
    }
}
