//! `wait.etcd_healthy`: poll until the member — or every member — serves a quorum read.

use schemars::JsonSchema;
use serde::Deserialize;

use super::etcdctl::{etcdctl, poll_until};
use crate::inventory::model::Node;
use super::{Tool, Act, Action, ActionInfo, args, schema_of, secs, ArgError, Command, Ctx, timeout_secs};

pub static INFO: ActionInfo = ActionInfo {
    name: "wait.etcd_healthy",
    summary: "wait until the member (or every member) answers a quorum read",
    default_timeout: secs(180),
    destructive: false,
    idempotent: true,
    schema: schema_of::<Args>,
    parse: |v, ctx| Ok(Action::new(WaitEtcdHealthy::new(args(v)?, ctx)?)),
};

/// Arguments of `wait.etcd_healthy`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[schemars(rename = "WaitEtcdHealthyArgs")]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// `member` (this node's member, the default) or `cluster` (every etcd member of the inventory at once).
    #[serde(default)]
    pub scope: Scope,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(rename = "HealthScope")]
pub enum Scope {
    #[default]
    Member,
    Cluster,
}

#[derive(Debug, Clone)]
pub struct WaitEtcdHealthy {
    pub scope: Scope,
    pub endpoints: Vec<String>,
    pub etcdctl: String,
    pub timeout_secs: u64,
}

impl WaitEtcdHealthy {
    pub fn new(args: Args, ctx: &Ctx) -> Result<Self, ArgError> {
        let node = ctx.require_node("wait.etcd_healthy")?;
        let endpoints = match args.scope {
            Scope::Member => vec![node.client_url()],
            Scope::Cluster => ctx
                .inventory
                .etcd_members()
                .iter()
                .map(|n| n.client_url())
                .collect(),
        };
        Ok(WaitEtcdHealthy {
            scope: args.scope,
            etcdctl: etcdctl(&node.etcd, &endpoints),
            endpoints,
            timeout_secs: timeout_secs(ctx.timeout),
        })
    }
}

impl Act for WaitEtcdHealthy {
    fn tools(&self, node: &Node) -> Vec<Tool> {
        vec![Tool::etcdctl(node)]
    }

    fn commands(&self) -> Vec<Command> {
        // `endpoint health` does a linearizable read: it passes only with a leader and quorum.
        vec![Command::Shell(poll_until(
            &format!("{} endpoint health >/dev/null 2>&1", self.etcdctl),
            self.timeout_secs,
        ))]
    }
}
