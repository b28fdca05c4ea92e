//! `snapshot.encryption_keys`: before a restore stops anything, every key that encrypted
//! objects in the snapshot must be in every control-plane node's EncryptionConfiguration
//! (for those objects' resources): otherwise kube-apiserver could not read them afterwards.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{
    Act, Action, ActionInfo, local_snapshot, ArgError, Command, Ctx, Native, RunCx, Said, args, schema_of, secs,
};
use crate::executor::{BoxFut, output_on};
use crate::kube::{apiserver_flag, encryption_rules, keys_for};
use crate::shell::quote;
use crate::snapshot::contents::Contents;

pub static INFO: ActionInfo = ActionInfo {
    name: "snapshot.encryption_keys",
    summary: "refuse a restore whose snapshot holds objects encrypted with a key missing from a control-plane node's EncryptionConfiguration",
    default_timeout: secs(600),
    destructive: false,
    idempotent: true,
    schema: schema_of::<Args>,
    parse: |v, ctx| Ok(Action::new(EncryptionKeys::new(args(v)?, ctx)?)),
};

const FLAG: &str = "--encryption-provider-config";

/// Arguments of `snapshot.encryption_keys` (the nodes asked are the control-plane role's).
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(rename = "SnapshotEncryptionKeysArgs")]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// The snapshot on this machine, or s3://bucket/key.
    pub snapshot: String,
}

#[derive(Debug, Clone)]
pub struct EncryptionKeys {
    pub snapshot: String,
    pub nodes: Vec<String>,
}

impl EncryptionKeys {
    pub fn new(args: Args, ctx: &Ctx) -> Result<Self, ArgError> {
        Ok(EncryptionKeys {
            snapshot: local_snapshot(ctx, "snapshot.encryption_keys", args.snapshot)?,
            nodes: ctx
                .inventory
                .with_role("control-plane")
                .map(|n| n.name.clone())
                .collect(),
        })
    }
}

impl Act for EncryptionKeys {
    fn commands(&self) -> Vec<Command> {
        vec![Command::native(
            self.clone(),
            format!(
                "read the encryption key of every value in {} and the EncryptionConfiguration ({FLAG} of kube-apiserver.yaml) on {}; refuse if one of those keys is missing for its resource",
                quote(&self.snapshot),
                if self.nodes.is_empty() {
                    "no node (the inventory has no control-plane role)".to_string()
                } else {
                    self.nodes.join(", ")
                }
            ),
        )]
    }
}

impl Native for EncryptionKeys {
    fn run<'a>(&'a self, cx: &'a RunCx<'a>) -> BoxFut<'a, Result<Said, String>> {
        Box::pin(async move {
            let local = cx.files.local(&self.snapshot).await?.path;
            let c = tokio::task::spawn_blocking(move || Contents::of_file(&local))
                .await
                .map_err(|e| format!("reading {}: {e}", self.snapshot))?
                .map_err(|e| e.to_string())?;
            // (provider, key) -> resource -> objects
            let used: Vec<((String, String), std::collections::BTreeMap<String, u64>)> = (0..c
                .encryption
                .len())
                .map(|i| (c.encryption[i].clone(), c.resources_encrypted_with(i as u16)))
                .collect();
            if used.is_empty() {
                return Ok(Said::shown(
                    "no value in the snapshot is encrypted: any kube-apiserver reads it".into(),
                ));
            }
            let mut missing = Vec::new();
            let mut lines = Vec::new();
            for node in cx.inventory.with_role("control-plane") {
                let manifest = format!("{}/kube-apiserver.yaml", node.etcd.manifests_dir);
                let text = output_on(
                    cx.exec,
                    node,
                    &format!("cat -- {}", quote(&manifest)),
                    &format!("cannot read {manifest}"),
                )
                .await?;
                let path = apiserver_flag(&String::from_utf8_lossy(&text), FLAG)
                    .map_err(|e| format!("{}: {manifest}: {e}", node.name))?;
                let rules = match &path {
                    None => Vec::new(),
                    Some(p) => {
                        let config = output_on(
                            cx.exec,
                            node,
                            &format!("cat -- {}", quote(p)),
                            &format!("cannot read {p}"),
                        )
                        .await?;
                        encryption_rules(&String::from_utf8_lossy(&config))
                            .map_err(|e| format!("{}: {p}: {e}", node.name))?
                    }
                };
                let shown_path = path.as_deref().unwrap_or("(no encryption configuration)");
                for ((provider, key), resources) in &used {
                    for (resource, n) in resources {
                        let readable = keys_for(&rules, resource)
                            .iter()
                            .any(|(p, k)| p == provider && k == key);
                        if !readable {
                            missing.push(format!(
                                "{}: {n} {resource} in the snapshot are encrypted with {provider} key {key:?}, which {shown_path} does not give {resource}",
                                node.name
                            ));
                        }
                    }
                }
                lines.push(format!("{}: {shown_path}", node.name));
            }
            let keys: Vec<String> = used
                .iter()
                .map(|((p, k), r)| {
                    format!(
                        "{p} key {k:?}: {}",
                        r.iter()
                            .map(|(res, n)| format!("{n} {res}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
                .collect();
            if !missing.is_empty() {
                return Err(format!(
                    "after this restore kube-apiserver could not read these objects:\n  - {}\nremedy: add each key named here (its name and secret, from the configuration the snapshot's cluster used) to the providers of its resources in the EncryptionConfiguration of every control-plane node, after the key that encrypts today, then run the restore again; nothing was stopped",
                    missing.join("\n  - ")
                ));
            }
            Ok(Said::shown(format!(
                "every key the snapshot needs is configured: {}\n{}",
                keys.join("; "),
                lines.join("\n")
            )))
        })
    }
}
