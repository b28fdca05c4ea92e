//! `file.chown`: give a restored data dir back to the user etcd runs as.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{Act, Action, ActionInfo, args, schema_of, secs, ArgError, Command, Ctx, node_path};
use crate::shell::quote;

pub static INFO: ActionInfo = ActionInfo {
    name: "file.chown",
    summary: "set the owner of a path (default: the etcd data dir, recursively)",
    default_timeout: secs(120),
    destructive: false,
    idempotent: true,
    schema: schema_of::<Args>,
    parse: |v, ctx| Ok(Action::new(FileChown::new(args(v)?, ctx)?)),
};

/// Arguments of `file.chown`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(rename = "FileChownArgs")]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// Path on the node; default: the node's etcd data dir.
    #[serde(default)]
    pub path: Option<String>,
    /// `user:group`; default: the inventory's `etcd.owner`.
    #[serde(default)]
    pub owner: Option<String>,
    /// Recurse into directories (default true).
    #[serde(default = "yes")]
    pub recursive: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone)]
pub struct FileChown {
    pub path: String,
    pub owner: String,
    pub recursive: bool,
}

impl FileChown {
    pub fn new(args: Args, ctx: &Ctx) -> Result<Self, ArgError> {
        let node = ctx.require_node("file.chown")?;
        let path = args.path.unwrap_or_else(|| node.etcd.data_dir.clone());
        node_path("path", &path)?;
        let owner = args.owner.unwrap_or_else(|| node.etcd.owner.clone());
        if !crate::check::is_owner(&owner) {
            return Err(ArgError::field(
                "owner",
                format!("{owner:?} is not `user` or `user:group`"),
            ));
        }
        Ok(FileChown {
            path,
            owner,
            recursive: args.recursive,
        })
    }
}

impl Act for FileChown {
    fn commands(&self) -> Vec<Command> {
        let r = if self.recursive { " -R" } else { "" };
        vec![Command::Shell(format!(
            "chown{r} {} {}",
            quote(&self.owner),
            quote(&self.path)
        ))]
    }
}
