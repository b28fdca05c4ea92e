//! `snapshot.save`: stream a snapshot from one member to this machine (Maintenance.Snapshot
//! through an SSH forward), write it atomically with a `.sha256`, and verify it.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{ArgError, Command, Ctx, Native};
use crate::shell::quote;

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

    pub fn commands(&self) -> Vec<Command> {
        vec![Command::native(
            Native::SaveSnapshot {
                dest: self.dest.clone(),
                member: self.member.clone(),
            },
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
