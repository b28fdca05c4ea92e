//! Keyspace maintenance over etcd's API: compact to the current revision, and prove that
//! writes work (after a NOSPACE alarm, the one thing that matters).

use etcd_client::{Client, CompactionOptions};

use super::connect_member;
use crate::executor::Executor;
use crate::inventory::model::Inventory;

async fn any_member<E: Executor + ?Sized>(
    exec: &E,
    inventory: &Inventory,
) -> Result<(String, Client), String> {
    let mut last = String::from("the inventory has no etcd member");
    for n in inventory.etcd_members() {
        match connect_member(exec, n).await {
            Ok(c) => return Ok((n.name.clone(), c)),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Compacts every revision before the current one away (physically: the call returns once
/// the members have done it), so a following defrag can give the space back.
pub async fn compact<E: Executor + ?Sized>(
    exec: &E,
    inventory: &Inventory,
) -> Result<String, String> {
    let (name, mut c) = any_member(exec, inventory).await?;
    let r = c
        .get("compact-probe", None)
        .await
        .map_err(|e| format!("cannot read the revision on {name}: {e}"))?;
    let rev = r.header().map_or(0, |h| h.revision());
    match c
        .compact(rev, Some(CompactionOptions::new().with_physical()))
        .await
    {
        Ok(_) => Ok(format!("compacted to revision {rev} (asked {name})")),
        // Already compacted there: nothing older is left, which is what was wanted.
        Err(e) if e.to_string().contains("compacted") => {
            Ok(format!("already compacted at revision {rev}"))
        }
        Err(e) => Err(format!("compacting to revision {rev} on {name}: {e}")),
    }
}

/// Puts a probe key, reads it back from every member, deletes it.
pub async fn check_writes<E: Executor + ?Sized>(
    exec: &E,
    inventory: &Inventory,
) -> Result<String, String> {
    let key = format!("/runbook/write-check/{}", std::process::id());
    let value = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    let (name, mut c) = any_member(exec, inventory).await?;
    c.put(key.as_str(), value.as_str(), None)
        .await
        .map_err(|e| format!("writes still fail (put on {name}): {e}"))?;
    let mut seen = Vec::new();
    for n in inventory.etcd_members() {
        let mut m = connect_member(exec, n).await?;
        let r = m
            .get(key.as_str(), None)
            .await
            .map_err(|e| format!("{} cannot read the probe back: {e}", n.name))?;
        if r.kvs().first().map(|kv| kv.value()) != Some(value.as_bytes()) {
            return Err(format!("{} does not serve the value just written", n.name));
        }
        seen.push(n.name.clone());
    }
    c.delete(key.as_str(), None)
        .await
        .map_err(|e| format!("cannot delete the probe {key}: {e}"))?;
    Ok(format!(
        "writes work: put {key} on {name}, read back on {}, deleted",
        seen.join(", ")
    ))
}
