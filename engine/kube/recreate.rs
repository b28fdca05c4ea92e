//! Re-creating objects read from a snapshot through kube-apiserver, in the order they depend
//! on each other (namespaces, then CustomResourceDefinitions, then everything else), all or
//! nothing as far as the API lets us know beforehand: every object is checked first — absent,
//! or present and only replaced when asked — and admitted by a server-side dry run, and only
//! when every one passes is anything created.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use super::api::{Api, object_path};

/// One object to re-create and where it lives in the API.
#[derive(Debug, Clone)]
pub struct Wanted {
    pub object: Value,
    /// The plural in the API path (`deployments`, `widgets`).
    pub plural: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl Wanted {
    fn api_version(&self) -> &str {
        self.object["apiVersion"].as_str().unwrap_or("v1")
    }

    fn group(&self) -> &str {
        self.api_version().rsplit_once('/').map_or("", |(g, _)| g)
    }

    pub fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or("?")
    }

    fn collection(&self) -> String {
        object_path(
            self.api_version(),
            self.namespace.as_deref(),
            &self.plural,
            None,
        )
    }

    fn path(&self) -> String {
        object_path(
            self.api_version(),
            self.namespace.as_deref(),
            &self.plural,
            Some(&self.name),
        )
    }

    /// `Deployment shop/web`, `CustomResourceDefinition widgets.example.com`.
    pub fn label(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind(), self.name),
            None => format!("{} {}", self.kind(), self.name),
        }
    }

    fn is_namespace(&self) -> bool {
        self.kind() == "Namespace" && self.group().is_empty()
    }

    fn is_crd(&self) -> bool {
        self.kind() == "CustomResourceDefinition"
    }

    /// `group/plural` a CRD defines.
    fn defines(&self) -> Option<String> {
        let spec = &self.object["spec"];
        Some(format!(
            "{}/{}",
            spec["group"].as_str()?,
            spec["names"]["plural"].as_str()?
        ))
    }
}

/// What kube-apiserver sets itself and refuses or ignores on create: identity, versions,
/// timestamps, managed fields, and status (a subresource, written by controllers).
pub fn clean(v: &mut Value) {
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
        if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
            for f in [
                "uid",
                "resourceVersion",
                "generation",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "managedFields",
                "selfLink",
            ] {
                meta.remove(f);
            }
        }
    }
}

/// Whether the live object already is the snapshot's: the same content, labels and
/// annotations (what a controller re-creates by itself, such as a namespace's
/// kube-root-ca.crt, usually is).
pub fn same(snapshot: &Value, live: &Value) -> bool {
    let comparable = |v: &Value| {
        let mut v = v.clone();
        clean(&mut v);
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.retain(|k, _| {
                matches!(k.as_str(), "name" | "namespace" | "labels" | "annotations")
            });
        }
        v
    };
    comparable(snapshot) == comparable(live)
}

/// Namespaces first, then CRDs, then the rest, each in the order given.
pub fn order(mut wanted: Vec<Wanted>) -> Vec<Wanted> {
    wanted.sort_by_key(|w| match (w.is_namespace(), w.is_crd()) {
        (true, _) => 0,
        (_, true) => 1,
        _ => 2,
    });
    wanted
}

/// What happened (or would happen) to one object.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Row {
    pub object: String,
    pub action: String,
    pub result: String,
    pub ok: bool,
}

/// Checks every object, then (unless `dry_run`, and only when all passed) creates them in
/// order; `overwrite` replaces objects that exist instead of refusing them.
pub async fn recreate(
    api: &Api,
    wanted: &[Wanted],
    dry_run: bool,
    overwrite: bool,
) -> Result<Vec<Row>, String> {
    // Namespaces and CRDs this run creates: what depends on them cannot be dry-run yet.
    let mut new_namespaces = BTreeSet::new();
    let mut new_kinds = BTreeSet::new();
    let mut current = Vec::with_capacity(wanted.len());
    for w in wanted {
        let answer = api.get(&w.path()).await?;
        let existing = match answer.status {
            200 => Some(answer.body),
            404 => {
                if w.is_namespace() {
                    new_namespaces.insert(w.name.clone());
                }
                if let Some(d) = w.defines().filter(|_| w.is_crd()) {
                    new_kinds.insert(d);
                }
                None
            }
            _ => {
                return Err(format!(
                    "cannot read {} from kube-apiserver: {}",
                    w.label(),
                    answer.message()
                ));
            }
        };
        current.push(existing);
    }
    let mut rows = Vec::new();
    for (w, existing) in wanted.iter().zip(&current) {
        let after = [
            w.namespace
                .as_ref()
                .filter(|ns| new_namespaces.contains(*ns))
                .map(|ns| format!("namespace {ns}")),
            Some(format!("{}/{}", w.group(), w.plural))
                .filter(|k| new_kinds.contains(k))
                .map(|k| format!("its CustomResourceDefinition ({k})")),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>();
        let row = |action: &str, result: String, ok: bool| Row {
            object: w.label(),
            action: action.to_string(),
            result,
            ok,
        };
        rows.push(match existing {
            Some(live) if same(&w.object, live) => row(
                "none",
                "unchanged: the cluster has the snapshot's object".into(),
                true,
            ),
            Some(_) if !overwrite => row(
                "refused",
                "exists in the cluster (--overwrite replaces it with the snapshot's)".into(),
                false,
            ),
            Some(live) => {
                let answer = api
                    .replace(&w.path(), &with_version(&w.object, live), true)
                    .await?;
                if answer.status < 300 {
                    row("replace", "admitted (dry run)".into(), true)
                } else {
                    row("replace", answer.message(), false)
                }
            }
            // Admission cannot be asked before what it depends on exists.
            None if !after.is_empty() => {
                row("create", format!("after {}", after.join(" and ")), true)
            }
            None => {
                let answer = api.create(&w.collection(), &w.object, true).await?;
                if answer.status < 300 {
                    row("create", "admitted (dry run)".into(), true)
                } else {
                    row("create", answer.message(), false)
                }
            }
        });
    }
    if dry_run || rows.iter().any(|r| !r.ok) {
        return Ok(rows);
    }
    for ((w, existing), row) in wanted.iter().zip(&current).zip(rows.iter_mut()) {
        if row.action == "none" {
            continue;
        }
        let answer = match existing {
            Some(live) => {
                api.replace(&w.path(), &with_version(&w.object, live), false)
                    .await?
            }
            None => api.create(&w.collection(), &w.object, false).await?,
        };
        if answer.status >= 300 {
            row.result = answer.message();
            row.ok = false;
            // Stop at the first failure: what follows may depend on it.
            return Ok(rows);
        }
        row.result = if existing.is_some() {
            "replaced".into()
        } else {
            "created".into()
        };
        if w.is_crd() {
            row.result = established(api, w)
                .await
                .map_or_else(|e| e, |()| "created, established".into());
        }
    }
    Ok(rows)
}

/// The snapshot's object with the live object's resourceVersion: a replace must name the
/// version it replaces.
fn with_version(object: &Value, live: &Value) -> Value {
    let mut o = object.clone();
    if let (Some(meta), Some(rv)) = (
        o.get_mut("metadata").and_then(Value::as_object_mut),
        live["metadata"]["resourceVersion"].as_str(),
    ) {
        meta.insert("resourceVersion".into(), rv.into());
    }
    o
}

/// Waits until a new CRD is Established (its resources are served), so the custom resources
/// after it can be created.
async fn established(api: &Api, crd: &Wanted) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = api.get(&crd.path()).await?;
        let ok = answer.body["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Established" && c["status"] == "True");
        if ok {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "created, but not Established after 60s: {}",
                crd.label()
            ));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(api_version: &str, kind: &str, plural: &str, ns: Option<&str>, name: &str) -> Wanted {
        Wanted {
            object: serde_json::json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name}}),
            plural: plural.into(),
            namespace: ns.map(str::to_string),
            name: name.into(),
        }
    }

    #[test]
    fn namespaces_then_crds_then_the_rest_at_their_api_paths() {
        let list = order(vec![
            w("apps/v1", "Deployment", "deployments", Some("shop"), "web"),
            w("example.com/v1", "Widget", "widgets", Some("shop"), "w1"),
            w(
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                "customresourcedefinitions",
                None,
                "widgets.example.com",
            ),
            w("v1", "Namespace", "namespaces", None, "shop"),
        ]);
        let labels: Vec<String> = list.iter().map(Wanted::label).collect();
        assert_eq!(
            labels,
            [
                "Namespace shop",
                "CustomResourceDefinition widgets.example.com",
                "Deployment shop/web",
                "Widget shop/w1"
            ]
        );
        assert_eq!(list[0].path(), "/api/v1/namespaces/shop");
        assert_eq!(
            list[1].path(),
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com"
        );
        assert_eq!(
            list[2].collection(),
            "/apis/apps/v1/namespaces/shop/deployments"
        );
        assert_eq!(
            list[3].path(),
            "/apis/example.com/v1/namespaces/shop/widgets/w1"
        );
    }
}
