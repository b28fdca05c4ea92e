//! `runbook snapshot get`: Kubernetes objects read straight from a snapshot file — no etcd,
//! no cluster — listed, or printed as kubectl prints them, or cleaned for re-creation.
//!
//! One pass over the file keeps only the selected resource's latest values, so memory follows
//! what is asked for, not the snapshot's size.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

use super::snapshot::fetch_if_s3;
use super::{Done, EXIT_INVALID, EXIT_OK, Failure, print_out};
use crate::cli::GetFormat;
use crate::kube::decrypt::Keys;
use crate::kube::object::{Stored, decode, sorted};
use crate::kube::recreate::{Wanted, clean, order, recreate};
use crate::kube::select::{Targets, resource_of};
use crate::snapshot::contents::{Resource, encryption_of, walk_revisions};
use crate::table::Table;

pub struct GetArgs<'a> {
    pub snapshot: &'a Path,
    /// `TYPE[,TYPE...] [NAME...]` or `TYPE/NAME...`; empty: a census of resources.
    pub targets: &'a [String],
    pub namespace: Option<&'a str>,
    pub output: GetFormat,
    pub for_apply: bool,
    pub show_managed_fields: bool,
    pub encryption_config: Option<&'a Path>,
    /// Re-create the objects in a cluster: `Some` with where to reach it.
    pub apply: Option<Cluster<'a>>,
}

/// The cluster `--apply` re-creates objects in, and how.
pub struct Cluster<'a> {
    pub inventory: Option<&'a Path>,
    pub kubeconfig: Option<&'a Path>,
    pub dry_run: bool,
    pub overwrite: bool,
}

/// One selected key: where it is, its revision, and what it turned out to be.
struct Found {
    at: Resource,
    /// The key's resource as kubectl names it (`deployments`, `widgets.example.com`).
    resource: String,
    revision: i64,
    shown: Result<Value, String>,
    stored: String,
}

pub fn run(a: GetArgs) -> Done {
    let fetched = fetch_if_s3(a.snapshot)?;
    let local = fetched.as_ref().map_or(a.snapshot, |f| f.path.as_path());
    let keys = match a.encryption_config {
        Some(p) => encryption_keys(p)?,
        None => Keys::default(),
    };
    if a.targets.is_empty() {
        return census(a.snapshot, local);
    }
    let targets = Targets::parse(a.targets).map_err(|e| {
        Failure::usage(
            "not a resource",
            &e,
            Some("e.g. secrets, deploy, crd, widgets.example.com"),
        )
    })?;
    let mut latest: BTreeMap<Vec<u8>, (i64, Vec<u8>)> = BTreeMap::new();
    let mut revision = 0;
    walk_revisions(local, &mut |rev, key, value| {
        revision = rev;
        if !targets.matches(key, a.namespace) {
            return;
        }
        match value {
            Some(v) => {
                latest.insert(key.to_vec(), (rev, v.to_vec()));
            }
            None => {
                latest.remove(key);
            }
        }
    })
    .map_err(|e| Failure::invalid(e.to_string()))?;
    if latest.is_empty() {
        return Err(nothing_found(
            a.snapshot,
            local,
            &targets,
            a.namespace,
            revision,
        ));
    }
    let for_apply = a.for_apply || a.apply.is_some();
    let found: Vec<Found> = latest
        .into_iter()
        .map(|(key, (rev, value))| show(&key, rev, &value, &keys, for_apply, a.show_managed_fields))
        .collect();
    if let Some(cluster) = &a.apply {
        return apply(&found, cluster, keys.is_empty());
    }
    // A listing names encrypted objects as such; printing them needs their key.
    let listing = a.output == GetFormat::Text && !a.for_apply;
    let text = match (a.output, a.for_apply) {
        (GetFormat::Text, false) => ended(table(&found)),
        (format, _) => objects(&found, targets.named(), format),
    };
    print_out(&text)?;
    let problems: Vec<&Found> = found
        .iter()
        .filter(|f| f.shown.is_err() && !(listing && f.stored.starts_with("encrypted")))
        .collect();
    for f in &problems {
        eprintln!(
            "{}: {}",
            path_of(&f.at),
            f.shown.as_ref().err().map_or("", String::as_str)
        );
    }
    if problems.iter().any(|f| f.stored.starts_with("encrypted")) && keys.is_empty() {
        eprintln!(
            "hint: pass --encryption-config with the EncryptionConfiguration (from a control-plane node, \
             kube-apiserver's --encryption-provider-config) that holds those keys"
        );
    }
    Ok(if problems.is_empty() {
        EXIT_OK
    } else {
        EXIT_INVALID
    })
}

fn encryption_keys(path: &Path) -> Result<Keys, Failure> {
    let bytes = crate::input::read_bytes(path, crate::input::DOCUMENT_LIMIT).map_err(|e| {
        Failure::usage(
            &format!("cannot read {}", path.display()),
            &e,
            Some("give kube-apiserver's EncryptionConfiguration file"),
        )
    })?;
    let text = String::from_utf8_lossy(&bytes);
    Keys::of_config(&text).map_err(|e| {
        Failure::usage(
            &format!("{} is not a usable EncryptionConfiguration", path.display()),
            &e,
            Some("give the file kube-apiserver's --encryption-provider-config names"),
        )
    })
}

/// Decrypts (when it can) and decodes one value; the apiserver's read-time fields are filled
/// as kube-apiserver fills them (resourceVersion is the key's revision, never stored).
fn show(
    key: &[u8],
    revision: i64,
    value: &[u8],
    keys: &Keys,
    for_apply: bool,
    managed_fields: bool,
) -> Found {
    let at = Resource::of(key).unwrap_or_else(|| Resource {
        resource: String::new(),
        namespace: None,
        name: String::from_utf8_lossy(key).into(),
    });
    let (stored, plain) = match encryption_of(value) {
        Some((provider, name)) => {
            let label = format!("encrypted ({provider} {name})");
            match keys.decrypt(value, provider, name, key) {
                Ok(p) => (label + ", decrypted", Ok(p)),
                Err(_) if keys.is_empty() => (
                    label,
                    Err(format!("encrypted with {provider} key {name:?}")),
                ),
                Err(e) => (label, Err(e)),
            }
        }
        None => (String::new(), Ok(value.to_vec())),
    };
    let shown = plain.and_then(|p| match decode(&p) {
        Ok(Stored::Object(v)) => Ok(v),
        Ok(Stored::Encrypted { provider, key }) => {
            Err(format!("encrypted twice ({provider} {key})"))
        }
        Err(e) => Err(e.to_string()),
    });
    let stored = if stored.is_empty() {
        match value.first() {
            Some(b'{') => "json".into(),
            _ => "protobuf".into(),
        }
    } else {
        stored
    };
    let shown = shown.map(|mut v| {
        if for_apply {
            clean(&mut v);
        } else if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), revision.to_string().into());
            // Hidden unless asked for, as kubectl hides them (they are bookkeeping).
            if !managed_fields {
                meta.remove("managedFields");
            }
        }
        sorted(v)
    });
    Found {
        resource: resource_of(key).unwrap_or_default(),
        at,
        revision,
        shown,
        stored,
    }
}

/// Text that ends its last line.
fn ended(mut text: String) -> String {
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

fn path_of(r: &Resource) -> String {
    match &r.namespace {
        Some(ns) => format!("{}/{ns}/{}", r.resource, r.name),
        None => format!("{}/{}", r.resource, r.name),
    }
}

fn table(found: &[Found]) -> String {
    let mut t = Table::new(
        &["NAMESPACE", "NAME", "KIND", "REVISION", "STORED"],
        &[3],
        false,
    );
    for f in found {
        let kind = f.shown.as_ref().map_or("?".to_string(), |v| {
            format!(
                "{} {}",
                v["apiVersion"].as_str().unwrap_or("?"),
                v["kind"].as_str().unwrap_or("?")
            )
        });
        t.row([
            f.at.namespace.clone().unwrap_or_default(),
            f.at.name.clone(),
            kind,
            f.revision.to_string(),
            f.stored.clone(),
        ]);
    }
    t.render()
}

/// One object alone when a name was asked for, otherwise a List (as kubectl prints several;
/// `kubectl apply -f` and `kubectl create -f` take either).
fn objects(found: &[Found], named: bool, format: GetFormat) -> String {
    let items: Vec<Value> = found.iter().filter_map(|f| f.shown.clone().ok()).collect();
    let doc = if named && items.len() == 1 {
        items.into_iter().next().expect("one item")
    } else {
        let mut list = Map::new();
        list.insert("apiVersion".into(), "v1".into());
        list.insert("items".into(), Value::Array(items));
        list.insert("kind".into(), "List".into());
        Value::Object(list)
    };
    match format {
        GetFormat::Json => serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n",
        _ => serde_saphyr::to_string(&doc).unwrap_or_default(),
    }
}

/// Every resource in the snapshot with its object count: what `snapshot get` can show.
fn census(shown_path: &Path, local: &Path) -> Done {
    let (revision, counts) = count_resources(local)?;
    let mut t = Table::new(&["RESOURCE", "OBJECTS"], &[1], false);
    for (r, n) in &counts {
        t.row([r.clone(), n.to_string()]);
    }
    print_out(&format!(
        "{} (revision {revision})\n{}",
        shown_path.display(),
        ended(t.render())
    ))?;
    Ok(EXIT_OK)
}

fn count_resources(local: &Path) -> Result<(i64, BTreeMap<String, u64>), Failure> {
    crate::snapshot::contents::resource_counts(local).map_err(|e| Failure::invalid(e.to_string()))
}

/// Nothing matched: say whether the resource is absent or only the name/namespace, and name
/// the resources the snapshot does hold that look like what was typed.
fn nothing_found(
    shown_path: &Path,
    local: &Path,
    targets: &Targets,
    namespace: Option<&str>,
    revision: i64,
) -> Failure {
    let counts = count_resources(local).map(|(_, c)| c).unwrap_or_default();
    let any_of_resource = counts.keys().any(|r| targets.covers_resource(r));
    let what = match namespace {
        Some(ns) => format!("{} in namespace {ns:?}", targets.describe()),
        None => targets.describe(),
    };
    let hint = if any_of_resource {
        "the snapshot holds other objects of that resource: list them without a name or namespace"
            .to_string()
    } else {
        let typed: Vec<String> = targets
            .args()
            .iter()
            .map(|a| a.to_ascii_lowercase())
            .collect();
        let mut close: Vec<&String> = counts
            .keys()
            .filter(|r| typed.iter().any(|t| strsim::jaro_winkler(r, t) > 0.8))
            .collect();
        close.truncate(5);
        if close.is_empty() {
            "`runbook snapshot get SNAPSHOT` lists the resources it holds".to_string()
        } else {
            format!(
                "did you mean {}? (`runbook snapshot get SNAPSHOT` lists them all)",
                close
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    };
    Failure::Invalid {
        what: format!(
            "no {what} in {} (revision {revision})",
            shown_path.display()
        ),
        causes: Vec::new(),
        hint: Some(hint),
    }
}

/// `--apply`: every selected object re-created through kube-apiserver (or, with --dry-run,
/// checked and admitted without being created).
fn apply(found: &[Found], cluster: &Cluster, no_keys: bool) -> Done {
    let unreadable: Vec<String> = found
        .iter()
        .filter_map(|f| {
            f.shown
                .as_ref()
                .err()
                .map(|e| format!("{}: {e}", path_of(&f.at)))
        })
        .collect();
    if !unreadable.is_empty() {
        return Err(Failure::Invalid {
            what: format!(
                "nothing was re-created: {} of the selected objects cannot be read from the snapshot",
                unreadable.len()
            ),
            causes: unreadable,
            hint: no_keys.then(|| {
                "pass --encryption-config with the EncryptionConfiguration that holds their keys"
                    .to_string()
            }),
        });
    }
    let wanted = order(
        found
            .iter()
            .filter_map(|f| {
                Some(Wanted {
                    object: f.shown.clone().ok()?,
                    plural: f
                        .resource
                        .split_once('.')
                        .map_or(f.resource.as_str(), |(p, _)| p)
                        .to_string(),
                    namespace: f.at.namespace.clone(),
                    name: f.at.name.clone(),
                })
            })
            .collect(),
    );
    let (dry_run, overwrite) = (cluster.dry_run, cluster.overwrite);
    let rows = super::kube::with_api(cluster.inventory, cluster.kubeconfig, move |api| {
        Box::pin(async move { recreate(api, &wanted, dry_run, overwrite).await })
    })?;
    let mut t = Table::new(&["OBJECT", "ACTION", "RESULT"], &[], false);
    for r in &rows {
        t.row([r.object.clone(), r.action.clone(), r.result.clone()]);
    }
    print_out(&ended(t.render()))?;
    let failed = rows.iter().filter(|r| !r.ok).count();
    if failed > 0 {
        let created = rows
            .iter()
            .filter(|r| r.result.starts_with("created") || r.result == "replaced")
            .count();
        eprintln!(
            "{failed} object(s) refused; {}",
            if created == 0 {
                "nothing was created or replaced".to_string()
            } else {
                format!("{created} created or replaced before the failure")
            }
        );
        return Ok(EXIT_INVALID);
    }
    if cluster.dry_run {
        eprintln!("dry run: nothing was created; run without --dry-run to create these");
    }
    Ok(EXIT_OK)
}
