//! `etcd.clear_data`: empty a stopped member's data dir before it joins again as a new member
//! (a removed member's old data would make it try to rejoin under its old identity).
//! The contents are moved aside, never deleted, exactly as `etcd.restore` does.

use schemars::JsonSchema;
use serde::Deserialize;

use super::etcd_restore::move_aside;
use super::{Act, Action, ActionInfo, args, schema_of, secs, ArgError, Command, Ctx, node_path};
use crate::shell::quote;

pub static INFO: ActionInfo = ActionInfo {
    name: "etcd.clear_data",
    summary: "move a stopped member's data aside (never deleted) so it can join again as a new member",
    default_timeout: secs(300),
    destructive: true,
    idempotent: true,
    schema: schema_of::<Args>,
    parse: |v, ctx| Ok(Action::new(EtcdClearData::new(args(v)?, ctx)?)),
};

/// Arguments of `etcd.clear_data`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[schemars(rename = "EtcdClearDataArgs")]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// Data dir to clear (default: the node's etcd data dir).
    #[serde(default)]
    pub data_dir: Option<String>,
}

#[derive(Debug, Clone)]
pub struct EtcdClearData {
    pub data_dir: String,
}

impl EtcdClearData {
    pub fn new(args: Args, ctx: &Ctx) -> Result<Self, ArgError> {
        let node = ctx.require_node("etcd.clear_data")?;
        let data_dir = args.data_dir.unwrap_or_else(|| node.etcd.data_dir.clone());
        node_path("data_dir", &data_dir)?;
        let data_dir = crate::check::normalize(&data_dir);
        if data_dir == "/" {
            return Err(ArgError::field("data_dir", "`data_dir` must not be /"));
        }
        Ok(EtcdClearData { data_dir })
    }
}

impl Act for EtcdClearData {
    fn commands(&self) -> Vec<Command> {
        vec![
            // The plan stops etcd first (a lint checks it); this is the last word on the host.
            Command::Shell(
                "if pgrep -x etcd >/dev/null; then echo 'etcd still runs on this node: refusing to clear its data' >&2; exit 1; fi"
                    .into(),
            ),
            Command::Shell(format!("mkdir -p {}", quote(&self.data_dir))),
            Command::Shell(move_aside(&self.data_dir)),
        ]
    }
}
