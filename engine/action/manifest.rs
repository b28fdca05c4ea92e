//! `manifest.stop` / `manifest.start`: park static pod manifests outside kubelet's
//! manifests directory (kubelet stops the pod) and bring them back (kubelet starts it).

use schemars::JsonSchema;
use serde::Deserialize;

use super::{
    Act, Action, ActionInfo, ArgError, Command, Ctx, Native, RunCx, Said, args, node_path,
    schema_of, secs,
};
use crate::executor::BoxFut;
use crate::inventory::model::Node;
use crate::shell::quote;

pub static STOP: ActionInfo = ActionInfo {
    name: "manifest.stop",
    summary: "park static pod manifests outside the manifests directory so kubelet stops the pods",
    default_timeout: secs(60),
    destructive: true,
    idempotent: true,
    schema: schema_of::<Args>,
    parse: |v, ctx| Ok(Action::new(ManifestMove::new(args(v)?, ctx, "manifest.stop")?)),
};

pub static START: ActionInfo = ActionInfo {
    name: "manifest.start",
    summary: "move parked static pod manifests back so kubelet starts the pods",
    default_timeout: secs(60),
    destructive: false,
    idempotent: true,
    schema: schema_of::<Args>,
    parse: |v, ctx| Ok(Action::new(ManifestMove::new(args(v)?, ctx, "manifest.start")?)),
};

/// Arguments of `manifest.stop` and `manifest.start`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(rename = "ManifestArgs")]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// Manifest file names inside the manifests directory, e.g. [kube-apiserver.yaml, etcd.yaml].
    pub manifests: Vec<String>,
    /// Where parked manifests live. Must be outside the manifests directory, or kubelet
    /// runs the "parked" copy. Default: `<manifests_dir>/../runbook-parked`.
    #[serde(default)]
    pub parking_dir: Option<String>,
    /// `manifest.stop` of etcd.yaml on every member: the leader is parked only once every
    /// other member has stopped (default true when the step stops the whole cluster).
    /// A leader stopped beside its peers hands leadership to one that is stopping too, and
    /// then waits etcd's whole request timeout (about 7 s) for a transfer that never lands.
    #[serde(default)]
    pub leader_last: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct ManifestMove {
    pub manifests: Vec<String>,
    pub manifests_dir: String,
    pub parking_dir: String,
    /// Wait, before parking, until this member is not the leader or is the last one up.
    pub leader_last: bool,
    /// `manifest.start` (move back) rather than `manifest.stop` (park).
    pub start: bool,
}

/// kubeadm's name for etcd's static pod manifest.
pub const ETCD_MANIFEST: &str = "etcd.yaml";

/// A manifest is a plain file name in the manifests directory.
pub fn manifest_name(field: &str, m: &str) -> Result<(), ArgError> {
    let valid = !m.is_empty()
        && !m.starts_with('.')
        && m.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && (m.ends_with(".yaml") || m.ends_with(".yml") || m.ends_with(".json"));
    if valid {
        Ok(())
    } else {
        Err(
            ArgError::field(field, format!("{m:?} is not a manifest file name"))
                .hint("a plain file name ending in .yaml, .yml or .json, without directories"),
        )
    }
}

/// The parking directory: the plan's, or `<manifests_dir>/../runbook-parked` on the node.
pub fn parking_dir(node: &Node, given: Option<String>) -> Result<String, ArgError> {
    Ok(match given {
        Some(p) => {
            node_path("parking_dir", &p)?;
            crate::check::normalize(&p)
        }
        None => {
            let parent = crate::check::normalize(&format!("{}/..", node.etcd.manifests_dir));
            format!("{}/runbook-parked", parent.trim_end_matches('/'))
        }
    })
}

/// Where a parked manifest file lives.
pub fn parked_path(node: &Node, given: Option<String>, manifest: &str) -> Result<String, ArgError> {
    let dir = parking_dir(node, given)?;
    Ok(format!("{}/{manifest}", dir.trim_end_matches('/')))
}

impl ManifestMove {
    pub fn new(args: Args, ctx: &Ctx, action: &str) -> Result<Self, ArgError> {
        let node = ctx.require_node(action)?;
        if args.manifests.is_empty() {
            return Err(ArgError::field("manifests", "`manifests` is empty")
                .hint("name the files, e.g. [kube-apiserver.yaml, etcd.yaml]"));
        }
        for m in &args.manifests {
            manifest_name("manifests", m)?;
            if m == ETCD_MANIFEST
                && let crate::inventory::model::Runtime::Systemd { unit, .. } = &node.etcd.runtime
            {
                return Err(ArgError::field(
                    "manifests",
                    format!("etcd on {} runs as the systemd unit {unit}, not from {m}", node.name),
                )
                .hint(if action == "manifest.stop" {
                    "stop etcd with `etcd.stop`, which parks a static pod's manifest or stops a unit"
                } else {
                    "start etcd with `etcd.start`, which moves a static pod's manifest back or starts a unit"
                }));
            }
        }
        let manifests_dir = node.etcd.manifests_dir.clone();
        let parking_dir = parking_dir(node, args.parking_dir)?;
        let whole_cluster = stops_whole_cluster(ctx);
        let parks_etcd =
            action == "manifest.stop" && args.manifests.iter().any(|m| m == ETCD_MANIFEST);
        if args.leader_last == Some(true) && !parks_etcd {
            return Err(ArgError::field(
                "leader_last",
                format!("`leader_last` applies to `manifest.stop` of {ETCD_MANIFEST}"),
            ));
        }
        Ok(ManifestMove {
            manifests: args.manifests,
            manifests_dir,
            parking_dir,
            leader_last: parks_etcd && args.leader_last.unwrap_or(whole_cluster),
            start: action == "manifest.start",
        })
    }

    fn stop_commands(&self) -> Vec<Command> {
        let mut out = Vec::new();
        if self.leader_last {
            out.push(leader_last_command());
        }
        out.push(Command::Shell(format!(
            "mkdir -p -m 0700 {}",
            quote(&self.parking_dir)
        )));
        for m in &self.manifests {
            let live = quote(&format!("{}/{m}", self.manifests_dir));
            let parked = quote(&format!("{}/{m}", self.parking_dir));
            // Already parked (a resumed run) is success; absent everywhere is an error.
            out.push(Command::Shell(format!(
                "if [ -e {live} ]; then mv {live} {parked}; elif [ ! -e {parked} ]; then echo {live}: no such manifest >&2; exit 1; fi"
            )));
        }
        out
    }

    fn start_commands(&self) -> Vec<Command> {
        let mut out = Vec::new();
        for m in &self.manifests {
            let live = quote(&format!("{}/{m}", self.manifests_dir));
            let parked = quote(&format!("{}/{m}", self.parking_dir));
            out.push(Command::Shell(format!(
                "if [ -e {parked} ]; then mv {parked} {live}; elif [ ! -e {live} ]; then echo {parked}: no parked manifest >&2; exit 1; fi"
            )));
        }
        out
    }
}

impl Act for ManifestMove {
    fn commands(&self) -> Vec<Command> {
        if self.start {
            self.start_commands()
        } else {
            self.stop_commands()
        }
    }
}

/// True when the step fans out over every member of a cluster of more than one.
pub fn stops_whole_cluster(ctx: &Ctx) -> bool {
    let members = ctx.inventory.etcd_members();
    members.len() > 1
        && members
            .iter()
            .all(|m| ctx.selected.iter().any(|f| f.name == m.name))
}

/// The first command of a whole-cluster etcd stop: the leader goes last.
pub fn leader_last_command() -> Command {
    Command::native(
        LeaderLast,
        "if this member is etcd's leader, wait until every other member has stopped (at most 20s), so it has no one to hand leadership to".to_string(),
    )
}

/// Holds the step while its node is etcd's leader and another member still answers.
#[derive(Debug)]
struct LeaderLast;

impl Native for LeaderLast {
    fn run<'a>(&'a self, cx: &'a RunCx<'a>) -> BoxFut<'a, Result<Said, String>> {
        Box::pin(async move {
            let node = cx.node("leader-last")?;
            crate::etcd::stop::leader_last(cx.exec, cx.inventory, node)
                .await
                .map(Said::shown)
        })
    }
}
