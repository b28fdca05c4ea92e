//! Membership changes over etcd's API: remove a member without losing quorum, add one back
//! once the cluster can take a new voter, and the `--initial-cluster` it must join with.
//!
//! etcd applies one configuration change at a time and (with `--strict-reconfig-check`, the
//! default) refuses a voter whose addition would leave fewer started members than a quorum.
//! So this process makes one membership change at a time, and an add waits until every
//! listed voter is started and answers before it asks.

use std::time::{Duration, Instant};

use etcd_client::Client;
use futures_util::future::join_all;
use tokio::sync::Mutex;

use super::{connect_member, status};
use crate::executor::Executor;
use crate::inventory::model::{Inventory, Node};

/// Serialises membership changes of one run (parallel fan-outs included).
static MEMBERSHIP: Mutex<()> = Mutex::const_new(());

/// How long one member may take to answer before it counts as not answering.
const ASK: Duration = Duration::from_secs(5);

/// A member as etcd lists it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub id: u64,
    /// Empty until the member has started and published itself.
    pub name: String,
    pub peer_urls: Vec<String>,
    pub is_learner: bool,
}

impl Listed {
    fn from(m: &etcd_client::Member) -> Listed {
        Listed {
            id: m.id(),
            name: m.name().to_string(),
            peer_urls: m.peer_urls().to_vec(),
            is_learner: m.is_learner(),
        }
    }

    fn is(&self, node: &Node) -> bool {
        self.peer_urls.iter().any(|u| same_url(u, &node.peer_url()))
    }

    fn label(&self) -> String {
        let name = if self.name.is_empty() {
            "(not started)"
        } else {
            &self.name
        };
        format!("{name} {:x} {}", self.id, self.peer_urls.join(","))
    }
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// The member list, from the first of `ask` (in inventory order) that answers, with its client.
async fn list_from(
    exec: &(impl Executor + ?Sized),
    ask: &[&Node],
) -> Result<(String, Client, Vec<Listed>), String> {
    if ask.is_empty() {
        return Err("no other etcd member in the inventory to ask".into());
    }
    let tries = join_all(ask.iter().map(|n| async move {
        let attempt = async {
            let mut c = connect_member(exec, n).await?;
            let r = c
                .member_list()
                .await
                .map_err(|e| format!("member list from {}: {e}", n.name))?;
            let list = r.members().iter().map(Listed::from).collect::<Vec<_>>();
            Ok::<_, String>((n.name.clone(), c, list))
        };
        tokio::time::timeout(ASK, attempt)
            .await
            .unwrap_or_else(|_| Err(format!("{} did not answer within {ASK:?}", n.name)))
    }))
    .await;
    let mut why = Vec::new();
    for t in tries {
        match t {
            Ok(found) => return Ok(found),
            Err(e) => why.push(e),
        }
    }
    Err(format!("no member answered: {}", why.join("; ")))
}

/// The inventory node a listed member is, by peer URL.
fn node_of<'a>(inv: &'a Inventory, m: &Listed) -> Option<&'a Node> {
    inv.etcd_members().into_iter().find(|n| m.is(n))
}

/// Which of `voters` answer a status call (through their own tunnels), and why the others do not.
async fn answering(
    exec: &(impl Executor + ?Sized),
    inv: &Inventory,
    voters: &[&Listed],
) -> (Vec<String>, Vec<String>) {
    let asked = join_all(voters.iter().map(|m| async move {
        let label = m.label();
        let Some(n) = node_of(inv, m) else {
            return Err(format!(
                "{label} is not in the inventory (add it, or remove that member first)"
            ));
        };
        let attempt = async {
            let mut c = connect_member(exec, n).await?;
            status(n, &mut c).await
        };
        match tokio::time::timeout(ASK, attempt).await {
            Ok(Ok(_)) => Ok(n.name.clone()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("{} did not answer within {ASK:?}", n.name)),
        }
    }))
    .await;
    let mut ok = Vec::new();
    let mut not = Vec::new();
    for a in asked {
        match a {
            Ok(n) => ok.push(n),
            Err(e) => not.push(e),
        }
    }
    (ok, not)
}

fn others<'a>(inv: &'a Inventory, node: &Node) -> Vec<&'a Node> {
    inv.etcd_members()
        .into_iter()
        .filter(|n| n.name != node.name)
        .collect()
}

/// Removes `node`'s member, asking the other members; refuses when the voters left behind
/// that answer would not be a quorum of the smaller cluster. Absent already is success.
pub async fn remove(
    exec: &(impl Executor + ?Sized),
    inv: &Inventory,
    node: &Node,
) -> Result<String, String> {
    let _one = MEMBERSHIP.lock().await;
    let (asked, mut client, list) = list_from(exec, &others(inv, node)).await?;
    let Some(target) = list
        .iter()
        .find(|m| m.is(node) || (!m.name.is_empty() && m.name == node.name))
    else {
        return Ok(format!(
            "{} ({}) is not a member (already removed); members: {}",
            node.name,
            node.peer_url(),
            list.iter()
                .map(Listed::label)
                .collect::<Vec<_>>()
                .join("; ")
        ));
    };
    let left: Vec<&Listed> = list
        .iter()
        .filter(|m| m.id != target.id && !m.is_learner)
        .collect();
    if !target.is_learner {
        let quorum = left.len() / 2 + 1;
        let (ok, not) = answering(exec, inv, &left).await;
        if left.is_empty() || ok.len() < quorum {
            return Err(format!(
                "removing {} leaves {} voting members, of which {} answer ({}); {quorum} are needed for a quorum{}",
                node.name,
                left.len(),
                ok.len(),
                if ok.is_empty() {
                    "none".into()
                } else {
                    ok.join(", ")
                },
                if not.is_empty() {
                    format!(": {}", not.join("; "))
                } else {
                    String::new()
                }
            ));
        }
    }
    let id = target.id;
    client
        .member_remove(id)
        .await
        .map_err(|e| format!("removing member {id:x} ({}) via {asked}: {e}", node.name))?;
    Ok(format!(
        "removed member {id:x} ({}, {}) via {asked}; {} voting members left",
        node.name,
        node.peer_url(),
        left.len()
    ))
}

/// What an add leaves behind: the member's id and the `--initial-cluster` it must start with.
pub struct Added {
    pub id: u64,
    pub learner: bool,
    pub initial_cluster: String,
    pub message: String,
}

/// Adds `node` once every listed voter is started and answers (polling until `deadline`):
/// as a learner (`learner`; etcd takes one learner at a time, so another one's promotion is
/// waited for), else as a voter. A member already listed with its peer URL is reused (a
/// resumed run).
pub async fn add(
    exec: &(impl Executor + ?Sized),
    inv: &Inventory,
    node: &Node,
    deadline: Instant,
    learner: bool,
) -> Result<Added, String> {
    let ask = others(inv, node);
    let kind = if learner { "learner" } else { "voting member" };
    loop {
        // Held for one round, not across the waits: a promotion this add waits for takes it too.
        let one = MEMBERSHIP.lock().await;
        let (asked, mut client, list) = list_from(exec, &ask).await?;
        if let Some(m) = list.iter().find(|m| m.is(node)) {
            if m.is_learner && !learner {
                return Err(format!(
                    "{} is listed as a learner ({:x}); promote or remove it first",
                    node.name, m.id
                ));
            }
            let initial_cluster = initial_cluster(inv, node, &list)?;
            return Ok(Added {
                id: m.id,
                learner: m.is_learner,
                message: format!(
                    "{} is already listed as {} {:x} (added by an earlier attempt); joins with --initial-cluster={initial_cluster}",
                    node.name,
                    if m.is_learner { "learner" } else { "member" },
                    m.id
                ),
                initial_cluster,
            });
        }
        let voters: Vec<&Listed> = list.iter().filter(|m| !m.is_learner).collect();
        let unstarted: Vec<String> = voters
            .iter()
            .filter(|m| m.name.is_empty())
            .map(|m| m.label())
            .collect();
        let (_, not) = answering(exec, inv, &voters).await;
        let mut waiting = unstarted;
        waiting.extend(not);
        if learner {
            // etcd refuses a second learner ("too many learner members in cluster").
            waiting.extend(list.iter().filter(|m| m.is_learner).map(|m| {
                format!(
                    "learner {} is not promoted yet (etcd takes one learner at a time)",
                    m.label()
                )
            }));
        }
        if waiting.is_empty() {
            let opts = learner.then(|| etcd_client::MemberAddOptions::new().with_is_learner());
            let r = match client.member_add([node.peer_url()], opts).await {
                Ok(r) => r,
                // etcd's own readiness rules (strict reconfig check): every voter started, and
                // the member asked connected to all of them for 5 s. Both pass with time.
                Err(e) if not_yet(&e.to_string()) && Instant::now() < deadline => {
                    drop(one);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                Err(e) => return Err(format!("adding {} via {asked}: {e}", node.name)),
            };
            let id = r.member().map(|m| m.id()).unwrap_or(0);
            let after: Vec<Listed> = r.member_list().iter().map(Listed::from).collect();
            let initial_cluster = initial_cluster(inv, node, &after)?;
            return Ok(Added {
                id,
                learner,
                message: format!(
                    "added {} ({}) as {kind} {id:x} via {asked}; {} voting members; joins with --initial-cluster={initial_cluster}",
                    node.name,
                    node.peer_url(),
                    after.iter().filter(|m| !m.is_learner).count()
                ),
                initial_cluster,
            });
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the cluster cannot take a new {kind}: {}",
                waiting.join("; ")
            ));
        }
        drop(one);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Promotes the learner `node` to a voter: etcd accepts only once the learner has caught up
/// with the leader, so it is asked again every half second until `deadline`. Already a voter
/// is success (a resumed run).
pub async fn promote(
    exec: &(impl Executor + ?Sized),
    inv: &Inventory,
    node: &Node,
    deadline: Instant,
) -> Result<String, String> {
    let ask = others(inv, node);
    let started = Instant::now();
    let mut refusals = 0u32;
    loop {
        let one = MEMBERSHIP.lock().await;
        let (asked, mut client, list) = list_from(exec, &ask).await?;
        let Some(m) = list.iter().find(|m| m.is(node)) else {
            return Err(format!(
                "{} is not a member of the cluster: add it (as a learner) first",
                node.name
            ));
        };
        if !m.is_learner {
            return Ok(format!(
                "{} is a voting member {:x} (promoted by an earlier attempt)",
                node.name, m.id
            ));
        }
        match client.member_promote(m.id).await {
            Ok(_) => {
                return Ok(format!(
                    "learner {} ({:x}) promoted to voting member via {asked} after {:.1}s ({refusals} times not yet in sync)",
                    node.name,
                    m.id,
                    started.elapsed().as_secs_f64()
                ));
            }
            // etcd: "can only promote a learner member which is in sync with leader"; or the
            // cluster is between leaders, or waiting for a member to start.
            Err(e) if promote_later(&e.to_string()) && Instant::now() < deadline => {
                refusals += 1;
                drop(one);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                return Err(format!(
                    "{} is still a learner after {:.0}s: {e}",
                    node.name,
                    started.elapsed().as_secs_f64()
                ));
            }
        }
    }
}

/// etcd's answers to a promotion meaning "not yet": retried until the step's deadline.
fn promote_later(err: &str) -> bool {
    not_yet(err)
        || [
            "in sync",
            "request timed out",
            "leader changed",
            "no leader",
        ]
        .iter()
        .any(|m| err.contains(m))
}

/// etcd's answers meaning "not now": retried until the step's deadline.
fn not_yet(err: &str) -> bool {
    err.contains("unhealthy cluster") || err.contains("not enough started members")
}

/// `name=peer_url,...` over the members etcd lists, in inventory order: a joining member
/// must name exactly the current membership, or etcd refuses it ("member count is unequal").
fn initial_cluster(inv: &Inventory, joining: &Node, list: &[Listed]) -> Result<String, String> {
    let mut parts = Vec::new();
    for n in inv.etcd_members() {
        if let Some(m) = list.iter().find(|m| m.is(n)) {
            if m.name.is_empty() && n.name != joining.name {
                return Err(format!(
                    "{} is listed but has not started; it must join before {} can",
                    m.label(),
                    joining.name
                ));
            }
            parts.push(format!("{}={}", n.name, n.peer_url()));
        }
    }
    if let Some(stranger) = list.iter().find(|m| node_of(inv, m).is_none()) {
        return Err(format!(
            "member {} is not in the inventory: add it to the inventory or remove it from the cluster",
            stranger.label()
        ));
    }
    Ok(parts.join(","))
}

/// The drill guard: none of the inventory's members is a member of the snapshot's cluster,
/// by peer URL (from the snapshot) or by member id (asked of whatever etcd runs there now).
pub async fn not_source(
    exec: &(impl Executor + ?Sized),
    inv: &Inventory,
    snapshot: &std::path::Path,
) -> Result<String, String> {
    let path = snapshot.to_path_buf();
    let st = tokio::task::spawn_blocking(move || crate::snapshot::status::status(&path))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    if st.members.is_empty() {
        return Err(format!(
            "{} records no members: cannot tell which cluster it came from",
            snapshot.display()
        ));
    }
    let mut clashes = Vec::new();
    for n in inv.etcd_members() {
        for m in &st.members {
            if m.peer_urls.iter().any(|u| same_url(u, &n.peer_url())) {
                clashes.push(format!(
                    "{} has peer URL {}, which is member {} ({}) of the snapshot's cluster",
                    n.name,
                    n.peer_url(),
                    m.name,
                    m.id
                ));
            }
        }
    }
    // Whatever runs on the scratch hosts now must not be one of the snapshot's members.
    let running = join_all(inv.etcd_members().into_iter().map(|n| async move {
        let attempt = async {
            let mut c = connect_member(exec, n).await?;
            status(n, &mut c).await
        };
        (n.name.clone(), tokio::time::timeout(ASK, attempt).await)
    }))
    .await;
    let mut seen = Vec::new();
    for (name, r) in running {
        match r {
            Ok(Ok(s)) => {
                let id = |hex: &str| u64::from_str_radix(hex, 16).ok();
                if let Some(m) = st
                    .members
                    .iter()
                    .find(|m| id(&m.id).is_some() && id(&m.id) == id(&s.member_id))
                {
                    clashes.push(format!(
                        "{name} runs member {} ({}) of the snapshot's cluster",
                        s.member_id, m.name
                    ));
                }
                seen.push(format!("{name} runs member {}", s.member_id));
            }
            _ => seen.push(format!("{name} runs no etcd that answers")),
        }
    }
    if !clashes.is_empty() {
        return Err(format!(
            "these hosts are the snapshot's own cluster, not scratch hosts: {}",
            clashes.join("; ")
        ));
    }
    Ok(format!(
        "{} came from members {}; none of them is here ({})",
        snapshot.display(),
        st.members
            .iter()
            .map(|m| format!("{} {}", m.name, m.peer_urls.join(",")))
            .collect::<Vec<_>>()
            .join(", "),
        seen.join(", ")
    ))
}
