//! `etcd.member_remove`, `etcd.member_add` and `etcd.member_promote`: membership changes for
//! the step's node, done over etcd's API through the *other* members (the node's own etcd is
//! stopped, or a learner). From etcd 3.5 a member joins as a learner and is promoted once in
//! sync, as kubeadm does; on 3.4, whose learners are immature, it joins as a voter.

use schemars::JsonSchema;
use serde::Deserialize;

use super::manifest_flags::FlagFile;
use super::{
    Act, Action, ActionInfo, ArgError, Command, Ctx, Native, RunCx, Said, args, schema_of, secs,
};
use crate::executor::BoxFut;

pub static REMOVE: ActionInfo = ActionInfo {
    name: "etcd.member_remove",
    summary: "remove the node's member through the other members, refusing if the voters left could not keep quorum",
    default_timeout: secs(60),
    destructive: true,
    idempotent: true,
    schema: schema_of::<RemoveArgs>,
    parse: |v, ctx| Ok(Action::new(EtcdMemberRemove::new(args(v)?, ctx)?)),
};

pub static ADD: ActionInfo = ActionInfo {
    name: "etcd.member_add",
    summary: "add the node as a learner (etcd 3.5+; a voter on 3.4) once every voter is started, one at a time, and write its join flags into its parked manifest",
    default_timeout: secs(300),
    destructive: true,
    idempotent: true,
    schema: schema_of::<AddArgs>,
    parse: |v, ctx| Ok(Action::new(EtcdMemberAdd::new(args(v)?, ctx)?)),
};

pub static PROMOTE: ActionInfo = ActionInfo {
    name: "etcd.member_promote",
    summary: "promote the node's learner to a voting member once it is in sync with the leader (asked until the step's deadline); nothing to do on etcd 3.4",
    default_timeout: secs(300),
    destructive: false,
    idempotent: true,
    schema: schema_of::<RemoveArgs>,
    parse: |v, ctx| Ok(Action::new(EtcdMemberPromote::new(args(v)?, ctx)?)),
};

/// Whether members join as learners: etcd 3.5 and later (3.4's learners are immature).
fn joins_as_learner(ctx: &Ctx) -> bool {
    let v = ctx.inventory.etcd.version;
    (v.major, v.minor) >= (3, 5)
}

#[derive(Debug, Clone)]
pub struct EtcdMemberPromote {
    pub node: String,
    pub learner: bool,
}

impl EtcdMemberPromote {
    pub fn new(_args: RemoveArgs, ctx: &Ctx) -> Result<Self, ArgError> {
        let node = ctx.require_node("etcd.member_promote")?;
        Ok(EtcdMemberPromote {
            node: node.name.clone(),
            learner: joins_as_learner(ctx),
        })
    }
}

impl Act for EtcdMemberPromote {
    fn commands(&self) -> Vec<Command> {
        let text = if self.learner {
            format!(
                "promote the learner {} to a voting member, asking again every 0.5 s until etcd finds it in sync with the leader; already a voter is success",
                self.node
            )
        } else {
            format!(
                "nothing to promote: on etcd 3.4 {} joined as a voter (its learners are immature)",
                self.node
            )
        };
        vec![Command::native(self.clone(), text)]
    }
}

impl Native for EtcdMemberPromote {
    fn run<'a>(&'a self, cx: &'a RunCx<'a>) -> BoxFut<'a, Result<Said, String>> {
        Box::pin(async move {
            if !self.learner {
                return Ok(Said::shown(format!(
                    "{} joined as a voter (etcd 3.4): nothing to promote",
                    self.node
                )));
            }
            let node = cx.node("a promotion")?;
            let deadline = cx.deadline - std::time::Duration::from_secs(2);
            crate::etcd::members::promote(cx.exec, cx.inventory, node, deadline)
                .await
                .map(Said::shown)
        })
    }
}

/// Arguments of `etcd.member_remove` and `etcd.member_promote` (none: the member is the
/// step's node).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[schemars(rename = "EtcdMemberRemoveArgs")]
#[serde(deny_unknown_fields)]
pub struct RemoveArgs {}

#[derive(Debug, Clone)]
pub struct EtcdMemberRemove {
    pub node: String,
    pub peer_url: String,
}

impl EtcdMemberRemove {
    pub fn new(_args: RemoveArgs, ctx: &Ctx) -> Result<Self, ArgError> {
        let node = ctx.require_node("etcd.member_remove")?;
        Ok(EtcdMemberRemove {
            node: node.name.clone(),
            peer_url: node.peer_url(),
        })
    }
}

impl Act for EtcdMemberRemove {
    fn commands(&self) -> Vec<Command> {
        vec![Command::native(
            self.clone(),
            format!(
                "remove {} ({}) from the member list, asking the other members; refuse unless the voters left that answer are a quorum; already removed is success",
                self.node, self.peer_url
            ),
        )]
    }
}

/// Arguments of `etcd.member_add`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[schemars(rename = "EtcdMemberAddArgs")]
#[serde(deny_unknown_fields)]
pub struct AddArgs {
    /// Static pod members: the parked etcd manifest's file name, which gets the join flags
    /// (default etcd.yaml). A systemd member gets them in its unit's environment file.
    #[serde(default)]
    pub manifest: Option<String>,
    /// Static pod members: where `etcd.stop` parked it (default:
    /// `<manifests_dir>/../runbook-parked`).
    #[serde(default)]
    pub parking_dir: Option<String>,
}

#[derive(Debug, Clone)]
pub struct EtcdMemberAdd {
    pub node: String,
    pub peer_url: String,
    /// Where the join flags go.
    pub flags: FlagFile,
    pub learner: bool,
}

impl EtcdMemberAdd {
    pub fn new(args: AddArgs, ctx: &Ctx) -> Result<Self, ArgError> {
        let node = ctx.require_node("etcd.member_add")?;
        Ok(EtcdMemberAdd {
            node: node.name.clone(),
            peer_url: node.peer_url(),
            flags: FlagFile::of(node, args.manifest, args.parking_dir)?,
            learner: joins_as_learner(ctx),
        })
    }
}

impl Act for EtcdMemberAdd {
    fn commands(&self) -> Vec<Command> {
        vec![Command::native(
            self.clone(),
            format!(
                "once every voting member is started and answers (etcd takes one change at a time{}), add {} ({}) as {}; \
then set {} and {} in {}",
                if self.learner { ", and one learner" } else { "" },
                self.node,
                self.peer_url,
                if self.learner {
                    "a learner (promoted once in sync)"
                } else {
                    "a voting member (etcd 3.4: its learners are immature)"
                },
                self.flags
                    .spell("initial-cluster", "<the members etcd lists after the add>"),
                self.flags.spell("initial-cluster-state", "existing"),
                self.flags.path()
            ),
        )]
    }
}

impl Native for EtcdMemberRemove {
    fn run<'a>(&'a self, cx: &'a RunCx<'a>) -> BoxFut<'a, Result<Said, String>> {
        Box::pin(async move {
            let node = cx.node("a member removal")?;
            crate::etcd::members::remove(cx.exec, cx.inventory, node)
                .await
                .map(Said::shown)
        })
    }
}

impl Native for EtcdMemberAdd {
    fn run<'a>(&'a self, cx: &'a RunCx<'a>) -> BoxFut<'a, Result<Said, String>> {
        Box::pin(async move {
            let node = cx.node("a member add")?;
            // The step's own time limit cuts the wait; leave a little for the manifest edit.
            let deadline = cx.deadline - std::time::Duration::from_secs(10);
            let added =
                crate::etcd::members::add(cx.exec, cx.inventory, node, deadline, self.learner)
                    .await?;
            let set = [
                ("initial-cluster".to_string(), added.initial_cluster.clone()),
                ("initial-cluster-state".to_string(), "existing".to_string()),
            ];
            let cmds = self.flags.edit_commands(&set, &[]);
            let refs: Vec<&str> = cmds.iter().map(String::as_str).collect();
            let what = format!("setting the join flags in {}", self.flags.path());
            let script = crate::shell::group_script(&refs);
            crate::executor::output_on(cx.exec, node, &script, &what)
                .await
                .map_err(|e| {
                    format!(
                        "{} (member {:x} is added: resume re-runs this step, which reuses it)\n{e}",
                        added.message, added.id
                    )
                })?;
            Ok(Said::shown(format!(
                "{}\n{}: {} {}",
                added.message,
                self.flags.path(),
                self.flags.spell("initial-cluster-state", "existing"),
                self.flags.spell("initial-cluster", &added.initial_cluster)
            )))
        })
    }
}
