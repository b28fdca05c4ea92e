//! `manifest.stop` / `manifest.start`: park static pod manifests outside kubelet's
//! manifests directory (kubelet stops the pod) and bring them back (kubelet starts it).

use schemars::JsonSchema;
use serde::Deserialize;

use super::{ArgError, Command, Ctx, node_path};
use crate::inventory::model::Node;
use crate::shell::quote;

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
}

#[derive(Debug, Clone)]
pub struct ManifestMove {
    pub manifests: Vec<String>,
    pub manifests_dir: String,
    pub parking_dir: String,
}

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
        }
        let manifests_dir = node.etcd.manifests_dir.clone();
        let parking_dir = parking_dir(node, args.parking_dir)?;
        Ok(ManifestMove {
            manifests: args.manifests,
            manifests_dir,
            parking_dir,
        })
    }

    pub fn stop_commands(&self) -> Vec<Command> {
        let mut out = vec![Command::Shell(format!(
            "mkdir -p -m 0700 {}",
            quote(&self.parking_dir)
        ))];
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

    pub fn start_commands(&self) -> Vec<Command> {
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
