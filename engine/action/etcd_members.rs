//! `etcd.member_remove` and `etcd.member_add`: membership changes for the step's node, done
//! over etcd's API through the *other* members (the node's own etcd is stopped).

use schemars::JsonSchema;
use serde::Deserialize;

use super::manifest::{manifest_name, parked_path};
use super::{ArgError, Command, Ctx, Native};

/// Arguments of `etcd.member_remove` (none: the member is the step's node).
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

    pub fn commands(&self) -> Vec<Command> {
        vec![Command::native(
            Native::MemberRemove,
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
    /// The parked etcd manifest's file name, which gets the join flags (default etcd.yaml).
    #[serde(default)]
    pub manifest: Option<String>,
    /// Where `manifest.stop` parked it (default: `<manifests_dir>/../runbook-parked`).
    #[serde(default)]
    pub parking_dir: Option<String>,
}

#[derive(Debug, Clone)]
pub struct EtcdMemberAdd {
    pub node: String,
    pub peer_url: String,
    pub manifest: String,
}

impl EtcdMemberAdd {
    pub fn new(args: AddArgs, ctx: &Ctx) -> Result<Self, ArgError> {
        let node = ctx.require_node("etcd.member_add")?;
        let name = args.manifest.unwrap_or_else(|| "etcd.yaml".into());
        manifest_name("manifest", &name)?;
        Ok(EtcdMemberAdd {
            node: node.name.clone(),
            peer_url: node.peer_url(),
            manifest: parked_path(node, args.parking_dir, &name)?,
        })
    }

    pub fn commands(&self) -> Vec<Command> {
        vec![Command::native(
            Native::MemberAdd {
                manifest: self.manifest.clone(),
            },
            format!(
                "once every voting member is started and answers (etcd takes one new voter at a time), add {} ({}) as a voting member; \
then set --initial-cluster=<the members etcd lists after the add> and --initial-cluster-state=existing in {}",
                self.node, self.peer_url, self.manifest
            ),
        )]
    }
}
