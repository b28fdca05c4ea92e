//! Defragment every member, one at a time: followers first, the leader last (a defragmenting
//! member blocks, and a blocked leader stalls the whole cluster), with a health gate before
//! moving on, then disarm the alarms that defragmentation cleared (NOSPACE).

use std::time::{Duration, Instant};

use etcd_client::{AlarmAction, AlarmType, Client};

use super::{connect_member, status};
use crate::executor::Executor;
use crate::inventory::model::Inventory;

pub async fn defrag_cluster<E: Executor + ?Sized>(
    exec: &E,
    inventory: &Inventory,
    gate: Duration,
) -> Result<String, String> {
    let members = inventory.etcd_members();
    let mut clients: Vec<(String, Client, bool, i64)> = Vec::new();
    for n in &members {
        let mut c = connect_member(exec, n).await?;
        let st = status(n, &mut c).await?;
        clients.push((n.name.clone(), c, st.is_leader, st.db_size));
    }
    // Followers in inventory order, then the leader.
    clients.sort_by_key(|(_, _, leader, _)| *leader);
    let mut report = Vec::new();
    for k in 0..clients.len() {
        let (name, client, leader, before) = &mut clients[k];
        let started = Instant::now();
        client
            .defragment()
            .await
            .map_err(|e| format!("defragmenting {name}: {e}"))?;
        let after = client
            .status()
            .await
            .map_err(|e| format!("status of {name} after defragmenting: {e}"))?
            .db_size();
        report.push(format!(
            "{name}{}: {} kB -> {} kB in {:.2}s",
            if *leader { " (leader, last)" } else { "" },
            *before / 1000,
            after / 1000,
            started.elapsed().as_secs_f64()
        ));
        // The gate: every member answers a quorum read before the next one blocks.
        let deadline = Instant::now() + gate;
        for (other, c, _, _) in clients.iter_mut() {
            loop {
                match c.get("health", None).await {
                    Ok(_) => break,
                    Err(e) if Instant::now() >= deadline => {
                        return Err(format!(
                            "{other} is not healthy after defragmenting the previous member: {e}"
                        ));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
    }
    let c = &mut clients[0].1;
    let alarms = c
        .alarm(AlarmAction::Get, AlarmType::None, None)
        .await
        .map_err(|e| format!("cannot list alarms: {e}"))?;
    for a in alarms.alarms() {
        let mut opts = etcd_client::AlarmOptions::new();
        opts.with_member(a.member_id());
        c.alarm(AlarmAction::Deactivate, a.alarm(), Some(opts))
            .await
            .map_err(|e| format!("cannot disarm {:?} on {:x}: {e}", a.alarm(), a.member_id()))?;
        report.push(format!(
            "disarmed {:?} on member {:x}",
            a.alarm(),
            a.member_id()
        ));
    }
    if alarms.alarms().is_empty() {
        report.push("no alarms to disarm".into());
    }
    Ok(report.join("\n"))
}
