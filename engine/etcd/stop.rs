//! Stopping a whole cluster without etcd's leadership hand-over stall.
//!
//! A member told to stop while it is the leader first hands leadership to its
//! longest-connected peer and waits for the transfer (etcd's request timeout: 5 s plus two
//! election timeouts). When every member stops at once that peer is stopping too: it takes
//! over and is gone, and the old leader waits out the whole timeout. So the leader goes
//! last: once its peers are gone it has no one to hand over to (or, having lost quorum, is
//! no longer leader) and stops at once.

use std::time::{Duration, Instant};

use super::{TlsMaterial, connect, read_tls, status};
use crate::executor::Executor;
use crate::inventory::model::{Inventory, Node};

/// How long the leader waits for its peers at most before it is stopped anyway.
pub const LEADER_WAIT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(200);
/// A member that does not answer its status within this is taken as stopped.
const ANSWER: Duration = Duration::from_secs(2);

/// Whether `node` answers a status call, and if so whether it is the leader.
async fn ask<E: Executor + ?Sized>(
    exec: &E,
    node: &Node,
    tls: Option<&TlsMaterial>,
) -> Option<bool> {
    let work = async {
        let addr = exec.tunnel(node, node.etcd.client_port).await.ok()?;
        let mut c = connect(node, addr, tls).await.ok()?;
        status(node, &mut c).await.ok().map(|s| s.is_leader)
    };
    tokio::time::timeout(ANSWER, work).await.ok().flatten()
}

/// Returns once `node` is not etcd's leader, or no other member answers, or `LEADER_WAIT`
/// has passed (then it says so): the moment to stop `node`.
pub async fn leader_last<E: Executor + ?Sized>(
    exec: &E,
    inventory: &Inventory,
    node: &Node,
) -> Result<String, String> {
    let deadline = Instant::now() + LEADER_WAIT;
    let started = Instant::now();
    // TLS files are read once: each poll only dials.
    let mut tls = Vec::new();
    for n in inventory.etcd_members() {
        tls.push((n, read_tls(exec, n).await.ok().flatten()));
    }
    let mine = tls
        .iter()
        .find(|(n, _)| n.name == node.name)
        .and_then(|(_, t)| t.as_ref());
    loop {
        match ask(exec, node, mine).await {
            None => {
                return Ok(format!(
                    "etcd on {} does not answer: nothing to hand over",
                    node.name
                ));
            }
            Some(false) => return Ok(format!("{} is not the leader: stopping it now", node.name)),
            Some(true) => {}
        }
        let mut up = Vec::new();
        for (n, t) in tls.iter().filter(|(n, _)| n.name != node.name) {
            if ask(exec, n, t.as_ref()).await.is_some() {
                up.push(n.name.as_str());
            }
        }
        let waited = started.elapsed().as_secs_f64();
        if up.is_empty() {
            return Ok(format!(
                "{} is the leader; every other member has stopped ({waited:.1}s): stopping it last, with no one to hand leadership to",
                node.name
            ));
        }
        if Instant::now() >= deadline {
            return Ok(format!(
                "{} is the leader and {} still answer after {waited:.0}s: stopping it anyway (it may wait out a leadership hand-over)",
                node.name,
                up.join(", ")
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}
