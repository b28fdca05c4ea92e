//! After a restore: the member list equals the inventory, every member answers a quorum read,
//! one cluster ID, HashKV equal on every member at one revision, the revision at least the
//! snapshot's (plus any bump), and as many keys as the snapshot holds.

use std::collections::BTreeSet;
use std::path::Path;

use etcd_client::{Client, GetOptions};
use futures_util::future::join_all;

use super::connect_member;
use crate::executor::Executor;
use crate::inventory::model::Inventory;
use crate::snapshot::status::status;

/// HashKV of every member at `revision` (0: each member's latest): name, hash, compact
/// revision, the revision hashed.
async fn hash_all(
    clients: &mut [(String, Client)],
    revision: i64,
) -> Result<Vec<(String, u32, i64, i64)>, String> {
    let mut out = Vec::new();
    for (name, c) in clients.iter_mut() {
        let h = c
            .hash_kv(revision)
            .await
            .map_err(|e| format!("HashKV({revision}) on {name}: {e}"))?;
        let at = h.header().map_or(revision, |hd| hd.revision());
        out.push((
            name.clone(),
            h.hash(),
            h.compact_version(),
            if revision > 0 { revision } else { at },
        ));
    }
    Ok(out)
}

pub async fn verify_cluster<E: Executor + ?Sized>(
    exec: &E,
    inventory: &Inventory,
    snapshot: Option<&Path>,
    bump: u64,
) -> Result<String, String> {
    let members = inventory.etcd_members();
    let mut report = Vec::new();
    let connected = join_all(members.iter().map(|n| connect_member(exec, n))).await;
    let mut clients: Vec<(String, Client)> = Vec::new();
    for (n, c) in members.iter().zip(connected) {
        clients.push((n.name.clone(), c?));
    }

    // Every member answers a linearizable read (what `endpoint health` asks).
    let mut cluster_ids = BTreeSet::new();
    // The lowest revision any member reported: every member has applied it. (The highest
    // may be a future revision on a member that lags while kube-apiserver writes.)
    let mut revision = i64::MAX;
    for (name, c) in clients.iter_mut() {
        let r = c
            .get("health", None)
            .await
            .map_err(|e| format!("{name} does not answer a quorum read: {e}"))?;
        let h = r
            .header()
            .ok_or_else(|| format!("{name}: a response without a header"))?;
        cluster_ids.insert(h.cluster_id());
        revision = revision.min(h.revision());
    }
    if revision == i64::MAX {
        revision = 0;
    }
    if cluster_ids.len() != 1 {
        return Err(format!(
            "members belong to {} different clusters: {:x?} (restored with different tokens or member lists?)",
            cluster_ids.len(),
            cluster_ids
        ));
    }
    report.push(format!(
        "{} members healthy, one cluster ID {:x}",
        clients.len(),
        cluster_ids.first().copied().unwrap_or(0)
    ));

    // The member list is the inventory: the same names, each with its own peer URL.
    let list = clients[0]
        .1
        .member_list()
        .await
        .map_err(|e| format!("cannot list members: {e}"))?;
    let mut got: Vec<(String, Vec<String>)> = list
        .members()
        .iter()
        .map(|m| (m.name().to_string(), m.peer_urls().to_vec()))
        .collect();
    got.sort();
    let mut want: Vec<(String, Vec<String>)> = members
        .iter()
        .map(|n| (n.name.clone(), vec![n.peer_url()]))
        .collect();
    want.sort();
    if got != want {
        return Err(format!(
            "the member list differs from the inventory:\n  cluster:   {got:?}\n  inventory: {want:?}"
        ));
    }
    report.push(format!(
        "member list equals the inventory: {}",
        want.iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));

    // HashKV at one revision on every member; equal compact revisions make a difference divergence.
    let hashes = match hash_all(&mut clients, revision).await {
        Ok(h) => h,
        // Compacted up to the newest revision (after a defrag plan, say): hash the latest
        // revision instead, retrying until every member answers at the same one.
        Err(e) if e.contains("compacted") => {
            let mut found = Err(e);
            for _ in 0..20 {
                let h = hash_all(&mut clients, 0).await?;
                if h.windows(2).all(|w| w[0].3 == w[1].3) {
                    found = Ok(h);
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            found?
        }
        Err(e) => return Err(e),
    };
    let revision = hashes.first().map_or(revision, |h| h.3);
    if hashes
        .windows(2)
        .any(|w| w[0].1 != w[1].1 || w[0].2 != w[1].2)
    {
        return Err(format!(
            "members disagree on HashKV at revision {revision}: {}",
            hashes
                .iter()
                .map(|(n, h, c, _)| format!("{n}={h:x} (compacted {c})"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    report.push(format!(
        "HashKV {:x} on every member at revision {revision}",
        hashes[0].1
    ));

    if let Some(path) = snapshot {
        let p = path.to_path_buf();
        let snap = tokio::task::spawn_blocking(move || status(&p))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let floor = snap.revision + bump as i64;
        if revision < floor {
            return Err(format!(
                "the cluster is at revision {revision}, below the snapshot's {}{}",
                snap.revision,
                if bump > 0 {
                    format!(" plus the bump {bump}")
                } else {
                    String::new()
                }
            ));
        }
        let count = clients[0]
            .1
            .get(
                "",
                Some(GetOptions::new().with_all_keys().with_count_only()),
            )
            .await
            .map_err(|e| format!("cannot count keys: {e}"))?
            .count();
        if count < 0 || count as u64 != snap.live_keys_36 {
            return Err(format!(
                "the cluster holds {count} keys, the snapshot {}",
                snap.live_keys_36
            ));
        }
        report.push(format!(
            "revision {revision} >= snapshot revision {}{}; {count} keys, as in the snapshot",
            snap.revision,
            if bump > 0 {
                format!(" + {bump}")
            } else {
                String::new()
            }
        ));
    }
    Ok(report.join("\n"))
}
