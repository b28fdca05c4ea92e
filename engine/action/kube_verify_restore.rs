//! `kube.verify_restore`: after a restore, proof that the snapshot meant to come back did —
//! seen through kube-apiserver, not etcd: the objects each resource holds in the snapshot
//! against what kube-apiserver lists now, and, when the plan names one, a canary object
//! whose value must be the snapshot's (a canary rewritten after the snapshot was taken shows
//! its later value only if the wrong data came back).

use schemars::JsonSchema;
use serde::Deserialize;

use super::{
    Act, Action, ActionInfo, ArgError, Command, Ctx, Native, RunCx, Said, args, local_snapshot,
    schema_of, secs,
};
use crate::executor::BoxFut;
use crate::kube::object::{Stored, decode};
use crate::kube::recreate::same;
use crate::shell::quote;
use crate::snapshot::contents::{latest_value, resource_counts};
use crate::table::Table;

pub static INFO: ActionInfo = ActionInfo {
    name: "kube.verify_restore",
    summary: "after a restore, kube-apiserver's object counts per resource against the snapshot's, and a canary object that must hold the snapshot's value",
    default_timeout: secs(300),
    destructive: false,
    idempotent: true,
    schema: schema_of::<Args>,
    parse: |v, ctx| Ok(Action::new(KubeVerifyRestore::new(args(v)?, ctx)?)),
};

/// Arguments of `kube.verify_restore`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(rename = "KubeVerifyRestoreArgs")]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// The snapshot that was restored, on this machine, or s3://bucket/key.
    pub snapshot: String,
    /// An object to prove the restore with, as RESOURCE/NAMESPACE/NAME or RESOURCE/NAME
    /// (`configmaps/kube-system/restore-canary`): kube-apiserver must serve it with the
    /// snapshot's content. Empty: counts only.
    #[serde(default)]
    pub canary: String,
}

#[derive(Debug, Clone)]
pub struct KubeVerifyRestore {
    pub snapshot: String,
    /// (resource, namespace, name).
    pub canary: Option<(String, Option<String>, String)>,
}

impl KubeVerifyRestore {
    pub fn new(args: Args, ctx: &Ctx) -> Result<Self, ArgError> {
        Ok(KubeVerifyRestore {
            canary: canary(&args.canary)?,
            snapshot: local_snapshot(ctx, "kube.verify_restore", args.snapshot)?,
        })
    }

    fn canary_text(&self) -> Option<String> {
        self.canary.as_ref().map(|(r, ns, n)| match ns {
            Some(ns) => format!("{r}/{ns}/{n}"),
            None => format!("{r}/{n}"),
        })
    }
}

/// RESOURCE/NAMESPACE/NAME or RESOURCE/NAME, in the characters Kubernetes names use.
fn canary(text: &str) -> Result<Option<(String, Option<String>, String)>, ArgError> {
    let c = text.trim();
    if c.is_empty() {
        return Ok(None);
    }
    let parts: Vec<&str> = c.split('/').collect();
    let ok = |s: &str| {
        !s.is_empty()
            && s
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-.:".contains(ch))
    };
    match parts.as_slice() {
        [r, ns, n] if [r, ns, n].into_iter().all(|s| ok(s)) => {
            Ok(Some((r.to_string(), Some(ns.to_string()), n.to_string())))
        }
        [r, n] if [r, n].into_iter().all(|s| ok(s)) => Ok(Some((r.to_string(), None, n.to_string()))),
        _ => Err(ArgError::field(
            "canary",
            format!("{c:?} is not RESOURCE/NAMESPACE/NAME or RESOURCE/NAME"),
        )
        .hint("e.g. configmaps/kube-system/restore-canary")),
    }
}

impl Act for KubeVerifyRestore {
    fn commands(&self) -> Vec<Command> {
        let canary = self
            .canary_text()
            .map_or(String::new(), |c| format!("; {c} must hold the snapshot's content"));
        vec![Command::native(
            self.clone(),
            format!(
                "count the objects of each resource in {} and as kube-apiserver lists them (admin.conf of a control-plane node, over SSH){canary}",
                quote(&self.snapshot)
            ),
        )]
    }
}

impl Native for KubeVerifyRestore {
    fn run<'a>(&'a self, cx: &'a RunCx<'a>) -> BoxFut<'a, Result<Said, String>> {
        Box::pin(async move {
            let local = cx.files.local(&self.snapshot).await?.path;
            let canary_key = self.canary.as_ref().map(|(r, ns, n)| match ns {
                Some(ns) => format!("/registry/{r}/{ns}/{n}"),
                None => format!("/registry/{r}/{n}"),
            });
            let read = tokio::task::spawn_blocking(move || {
                let counts = resource_counts(&local)?;
                let canary = match canary_key {
                    Some(k) => latest_value(&local, k.as_bytes())?,
                    None => None,
                };
                Ok::<_, crate::snapshot::status::StatusError>((counts, canary))
            })
            .await
            .map_err(|e| format!("reading {}: {e}", self.snapshot))?
            .map_err(|e| e.to_string())?;
            let ((revision, counts), canary_value) = read;
            let reached = async {
                let (api, node, _) = crate::kube::api::through_nodes(cx.exec, cx.inventory).await?;
                let served = api.listable().await?;
                Ok::<_, String>((api, node, served))
            };
            let (api, node, served) = match reached.await {
                Ok(r) => r,
                // Without a canary the counts inform; a kube-apiserver this runbook cannot
                // reach (no admin.conf where kubeadm writes it) does not undo a good restore.
                Err(e) if self.canary.is_none() => {
                    return Ok(Said::shown(format!(
                        "not verified through kube-apiserver: {e}"
                    )));
                }
                Err(e) => return Err(e),
            };
            let mut t = Table::new(&["RESOURCE", "SNAPSHOT", "KUBE-APISERVER"], &[1, 2], false);
            let (mut agree, mut differ) = (0, Vec::new());
            for (resource, n) in &counts {
                // `widgets.example.com` names its group; a built-in's is not in its key.
                let (plural, group) = resource.split_once('.').unwrap_or((resource, ""));
                let path = served
                    .get(&(group.to_string(), plural.to_string()))
                    .or_else(|| {
                        (group.is_empty())
                            .then(|| served.iter().find(|((_, p), _)| p == plural).map(|(_, v)| v))
                            .flatten()
                    });
                let live = match path {
                    Some(p) => api.count(p).await.map_or_else(|e| e, |c| c.to_string()),
                    None => "not served".to_string(),
                };
                if path.is_some() {
                    if live == n.to_string() {
                        agree += 1;
                    } else {
                        differ.push(format!("{resource} ({n} -> {live})"));
                    }
                }
                t.row([resource.clone(), n.to_string(), live]);
            }
            let mut text = format!(
                "snapshot revision {revision}; kube-apiserver of {node}\n{}\n{agree} resources hold as many objects as the snapshot",
                t.render().trim_end()
            );
            if !differ.is_empty() {
                // Controllers start writing as soon as kube-apiserver is back (leases, events,
                // endpoints): said, not failed.
                text.push_str(&format!(
                    "; differing since (controllers at work after the restore): {}",
                    differ.join(", ")
                ));
            }
            if let (Some((r, ns, n)), Some(c)) = (&self.canary, self.canary_text()) {
                let Some((rev, value)) = canary_value else {
                    return Err(format!(
                        "{text}\nthe canary {c} is not in the snapshot: name an object the snapshot holds, or none"
                    ));
                };
                let snapshot_object = match decode(&value) {
                    Ok(Stored::Object(v)) => v,
                    Ok(Stored::Encrypted { provider, key }) => {
                        return Err(format!(
                            "{text}\nthe canary {c} is encrypted in the snapshot ({provider} {key}): name an object stored in the clear"
                        ));
                    }
                    Err(e) => return Err(format!("{text}\nthe canary {c}: {e}")),
                };
                let plural = r.split_once('.').map_or(r.as_str(), |(p, _)| p);
                let path = crate::kube::api::object_path(
                    snapshot_object["apiVersion"].as_str().unwrap_or("v1"),
                    ns.as_deref(),
                    plural,
                    Some(n),
                );
                let live = api.get(&path).await?;
                if live.status != 200 {
                    return Err(format!(
                        "{text}\nthe canary {c} (revision {rev} in the snapshot) is not served by kube-apiserver: {}; this is not the data the snapshot holds",
                        live.message()
                    ));
                }
                if !same(&snapshot_object, &live.body) {
                    return Err(format!(
                        "{text}\nthe canary {c} differs from the snapshot's (revision {rev}): kube-apiserver serves other data than the snapshot holds (a later write survived, or another snapshot came back)\n\
                         remedy: compare `runbook snapshot get {snap} {c_get} -o yaml` with `kubectl get {c_get} -o yaml`; if the cluster is not the snapshot's, restore the intended snapshot again before workloads act on this data",
                        snap = self.snapshot,
                        c_get = match ns {
                            Some(ns) => format!("{r} {n} -n {ns}"),
                            None => format!("{r} {n}"),
                        },
                    ));
                }
                text.push_str(&format!(
                    "\nthe canary {c} holds the snapshot's content (revision {rev})"
                ));
            }
            Ok(Said::shown(text))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canaries_are_resource_namespace_name_or_resource_name() {
        assert_eq!(
            canary("configmaps/kube-system/canary").unwrap(),
            Some(("configmaps".into(), Some("kube-system".into()), "canary".into()))
        );
        assert_eq!(
            canary("namespaces/shop").unwrap(),
            Some(("namespaces".into(), None, "shop".into()))
        );
        assert_eq!(canary(" ").unwrap(), None);
        assert!(canary("configmaps//x").is_err());
        assert!(canary("a/b/c/d").is_err());
        assert!(canary("cm/ns/$(x)").is_err());
    }
}
