//! The values templates see: `params`, `cluster`, `plan`, `run`, `node`, `etcd`, `captures`.

use std::collections::BTreeMap;

use minijinja::Value;
use serde_json::json;

use super::RunValues;
use crate::action::etcd_restore::initial_cluster;
use crate::action::run::capture_var;
use crate::inventory::model::{EtcdConfig, Inventory, Node};

/// `cluster`: the inventory's name and its etcd members.
pub fn cluster(inv: &Inventory) -> serde_json::Value {
    let members = inv.etcd_members();
    json!({
        "name": inv.cluster,
        "members": members.iter().map(|n| n.name.clone()).collect::<Vec<_>>(),
        "initial_cluster": initial_cluster(&members),
        "endpoints": members.iter().map(|n| n.client_url()).collect::<Vec<_>>().join(","),
        "token": inv.etcd.cluster_token,
    })
}

fn etcd(cfg: &EtcdConfig) -> serde_json::Value {
    let mut v = serde_json::to_value(cfg).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert(
            "local_endpoint".into(),
            json!(format!("{}://127.0.0.1:{}", cfg.scheme, cfg.client_port)),
        );
    }
    v
}

fn node(n: &Node) -> serde_json::Value {
    json!({
        "name": n.name,
        "address": n.address,
        "roles": n.roles,
        "peer_url": n.peer_url(),
        "client_url": n.client_url(),
    })
}

/// `run`: what only the run decides (see [`RunValues`]).
fn run(values: &RunValues) -> serde_json::Value {
    json!({ "started": values.started, "id": values.id })
}

/// Context for parameter defaults: no params (they are being computed), no node.
pub fn for_defaults(inv: &Inventory, plan_name: &str, values: &RunValues) -> Value {
    val(json!({
        "cluster": cluster(inv),
        "plan": { "name": plan_name },
        "etcd": etcd(&inv.etcd),
        "run": run(values),
    }))
}

/// Context for one step instance; `captures` only exists for shell templates.
pub fn for_instance(
    inv: &Inventory,
    plan_name: &str,
    params: &BTreeMap<String, String>,
    values: &RunValues,
    on: Option<&Node>,
    captures: Option<&[String]>,
) -> Value {
    let mut ctx: BTreeMap<String, Value> = BTreeMap::new();
    ctx.insert("params".into(), val(params));
    ctx.insert("run".into(), val(run(values)));
    ctx.insert("cluster".into(), val(cluster(inv)));
    ctx.insert("plan".into(), val(json!({ "name": plan_name })));
    ctx.insert(
        "etcd".into(),
        val(etcd(on.map(|n| &n.etcd).unwrap_or(&inv.etcd))),
    );
    if let Some(n) = on {
        ctx.insert("node".into(), val(node(n)));
    }
    if let Some(caps) = captures {
        // A capture is read from the environment at run time, double-quoted so it stays one word.
        let map: BTreeMap<String, Value> = caps
            .iter()
            .map(|c| {
                let var = capture_var(c);
                (
                    c.clone(),
                    Value::from_safe_string(format!("\"${{{var}}}\"")),
                )
            })
            .collect();
        ctx.insert("captures".into(), Value::from(map));
    }
    Value::from(ctx)
}

fn val<T: serde::Serialize>(v: T) -> Value {
    Value::from(minijinja::value::Serde(v))
}
