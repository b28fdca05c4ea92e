//! `snapshot.save`: stream a snapshot from one member to this machine (Maintenance.Snapshot
//! through an SSH forward), write it atomically with a `.sha256`, and verify it.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{Act, Action, ActionInfo, args, schema_of, secs, RunCx, Said, ArgError, Command, Ctx, Native};
use crate::executor::BoxFut;
use crate::shell::quote;

pub static INFO: ActionInfo = ActionInfo {
    name: "snapshot.save",
    summary: "stream a snapshot from a member to this machine over SSH, atomically, with a .sha256, verified",
    default_timeout: secs(1800),
    destructive: false,
    idempotent: true,
    schema: schema_of::<Args>,
    parse: |v, ctx| Ok(Action::new(SnapshotSave::new(args(v)?, ctx)?)),
};

/// Arguments of `snapshot.save`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(rename = "SnapshotSaveArgs")]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// Where to write it on this machine (`FILE.part` first, then renamed; `FILE.sha256` beside it).
    pub dest: String,
    /// The member to stream from; by default preflight picks a healthy voter with the highest
    /// applied index, a follower before the leader.
    #[serde(default)]
    pub member: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SnapshotSave {
    pub dest: String,
    pub member: Option<String>,
}

impl SnapshotSave {
    pub fn new(args: Args, ctx: &Ctx) -> Result<Self, ArgError> {
        if ctx.node.is_some() {
            return Err(ArgError {
                field: None,
                message: "`snapshot.save` writes on this machine; it streams from a member itself"
                    .into(),
                hint: Some("use `on: local` and name the member with `member:`".into()),
            });
        }
        if args.dest.trim().is_empty() || args.dest.chars().any(char::is_control) {
            return Err(ArgError::field(
                "dest",
                "`dest` is empty or contains a control character",
            ));
        }
        if let Some(m) = &args.member
            && !ctx.inventory.etcd_members().iter().any(|n| &n.name == m)
        {
            return Err(ArgError::field(
                "member",
                format!("no etcd member {m:?} in the inventory"),
            ));
        }
        Ok(SnapshotSave {
            dest: args.dest,
            member: args.member,
        })
    }
}

impl Act for SnapshotSave {
    fn commands(&self) -> Vec<Command> {
        vec![Command::native(
            self.clone(),
            format!(
                "stream a snapshot from {} to {} (this machine) over an SSH forward; write .part, fsync, rename, .sha256; verify it",
                self.member
                    .as_deref()
                    .unwrap_or("the member preflight picks"),
                quote(&self.dest)
            ),
        )]
    }
}

impl Native for SnapshotSave {
    fn run<'a>(&'a self, cx: &'a RunCx<'a>) -> BoxFut<'a, Result<Said, String>> {
        Box::pin(async move {
            let members = cx.inventory.etcd_members();
            let mut pre = crate::etcd::preflight::run(cx.exec, &members, &[]).await?;
            let source = self.member.clone().unwrap_or_else(|| pre.source.clone());
            let client = pre
                .clients
                .get_mut(&source)
                .ok_or_else(|| format!("no connection to {source}"))?;
            let dest = &self.dest;
            let saved = crate::etcd::save::save(client, std::path::Path::new(dest)).await?;
            let mb = saved.bytes as f64 / 1e6;
            Ok(Said::shown(format!(
                "saved {dest} from {source}: {mb:.1} MB in {:.2}s, sha256 {}, trailer ok, revision {}, {} keys, hash {}",
                saved.took.as_secs_f64(),
                saved.sha256,
                saved.status.revision,
                saved.status.total_keys,
                saved.status.hash
            )))
        })
    }
}
