//! `etcd.stop` / `etcd.start`: stop and start the node's etcd member the way the inventory
//! says it runs: a static pod (park `etcd.yaml` outside kubelet's manifests directory, move
//! it back) or a systemd unit (`systemctl stop`, `systemctl start`).

use schemars::JsonSchema;
use serde::Deserialize;

use super::manifest::{ETCD_MANIFEST, ManifestMove};
use super::{Act, Action, ActionInfo, ArgError, Command, Ctx, args, schema_of, secs};
use crate::inventory::model::Runtime;
use crate::shell::quote;

pub static STOP: ActionInfo = ActionInfo {
    name: "etcd.stop",
    summary: "stop the node's etcd member: park its static pod manifest, or stop its systemd unit",
    default_timeout: secs(120),
    destructive: true,
    idempotent: true,
    schema: schema_of::<Args>,
    parse: |v, ctx| parse(args(v)?, ctx, false),
};

pub static START: ActionInfo = ActionInfo {
    name: "etcd.start",
    summary: "start the node's etcd member: move its static pod manifest back, or start its systemd unit",
    default_timeout: secs(60),
    destructive: false,
    idempotent: true,
    schema: schema_of::<Args>,
    parse: |v, ctx| parse(args(v)?, ctx, true),
};

/// Arguments of `etcd.stop` and `etcd.start`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[schemars(rename = "EtcdServiceArgs")]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// Static pod members: where the parked manifest waits (outside the manifests directory;
    /// default `<manifests_dir>/../runbook-parked`). Ignored for systemd members.
    #[serde(default)]
    pub parking_dir: Option<String>,
    /// `etcd.stop` on every member: the leader stops only once every other member has
    /// (default true when the step stops the whole cluster). A leader stopped beside its
    /// peers hands leadership to one that is stopping too, and then waits etcd's whole
    /// request timeout (about 7 s) for a transfer that never lands.
    #[serde(default)]
    pub leader_last: Option<bool>,
}

/// A static pod member's stop or start is a [`ManifestMove`] of `etcd.yaml` (so what checks
/// manifest moves checks it too); a systemd member's is an [`EtcdUnit`].
fn parse(args: Args, ctx: &Ctx, start: bool) -> Result<Action, ArgError> {
    let name = if start { "etcd.start" } else { "etcd.stop" };
    let node = ctx.require_node(name)?;
    if start && args.leader_last.is_some() {
        return Err(ArgError::field(
            "leader_last",
            "`leader_last` applies to `etcd.stop`",
        ));
    }
    Ok(match &node.etcd.runtime {
        Runtime::StaticPod => {
            let moved = super::manifest::Args {
                manifests: vec![ETCD_MANIFEST.to_string()],
                parking_dir: args.parking_dir,
                leader_last: args.leader_last,
            };
            let action = if start { "manifest.start" } else { "manifest.stop" };
            Action::new(ManifestMove::new(moved, ctx, action)?)
        }
        Runtime::Systemd { unit, .. } => Action::new(EtcdUnit {
            unit: unit.clone(),
            start,
            leader_last: !start
                && args
                    .leader_last
                    .unwrap_or_else(|| super::manifest::stops_whole_cluster(ctx)),
        }),
    })
}

/// Stops or starts a systemd member's unit.
#[derive(Debug, Clone)]
pub struct EtcdUnit {
    pub unit: String,
    /// `etcd.start` rather than `etcd.stop`.
    pub start: bool,
    leader_last: bool,
}

impl Act for EtcdUnit {
    fn commands(&self) -> Vec<Command> {
        let unit = quote(&self.unit);
        if !self.start {
            let mut out = Vec::new();
            if self.leader_last {
                out.push(super::manifest::leader_last_command());
            }
            // Returns once the unit's processes are gone; a stopped unit is success.
            out.push(Command::Shell(format!("systemctl stop {unit}")));
            return out;
        }
        vec![
            // A unit that failed before (a start refused on moved-aside data) starts again
            // only once its failure is forgotten.
            Command::Shell(format!("systemctl reset-failed {unit} 2>/dev/null || true")),
            // --no-block: with Type=notify (Kubespray's unit) `systemctl start` waits until
            // etcd says it is ready, which a member of a cluster still being started is not
            // on its own; the plan waits for its health instead.
            Command::Shell(format!("systemctl start --no-block {unit}")),
        ]
    }
}
