//! etcd over its own API (etcd-client): one client per member, reached through an SSH local
//! forward to the member's loopback client port, with the client certificate read from the
//! node into memory — never written to the operator's disk.

pub mod certs;
pub mod clock;
pub mod defrag;
pub mod envfile;
pub mod maintenance;
pub mod members;
pub mod metrics;
pub mod preflight;
pub mod roll;
pub mod save;
pub mod stop;
pub mod verify;

use std::net::SocketAddr;
use std::time::Duration;

use etcd_client::{Certificate, Client, Identity, TlsOptions};
use serde::Serialize;

use crate::executor::{Executor, output_on};
use crate::inventory::model::Node;
use crate::shell::quote;

/// The client certificate, key and CA of a node, as bytes.
pub struct TlsMaterial {
    pub ca: Vec<u8>,
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

impl Drop for TlsMaterial {
    fn drop(&mut self) {
        // The key leaves memory as it came: only through this process.
        self.key.iter_mut().for_each(|b| *b = 0);
    }
}

/// Reads the inventory's TLS files from the node (over the executor, so over SSH).
pub async fn read_tls<E: Executor + ?Sized>(
    exec: &E,
    node: &Node,
) -> Result<Option<TlsMaterial>, String> {
    let Some(tls) = &node.etcd.tls else {
        return Ok(None);
    };
    let mut parts = Vec::new();
    for path in [&tls.ca, &tls.cert, &tls.key] {
        let what = format!("cannot read {path}");
        parts.push(output_on(exec, node, &format!("cat -- {}", quote(path)), &what).await?);
    }
    let key = parts.pop().unwrap_or_default();
    let cert = parts.pop().unwrap_or_default();
    let ca = parts.pop().unwrap_or_default();
    Ok(Some(TlsMaterial { ca, cert, key }))
}

/// A client for one member through `addr` (its tunnel). etcd-client balances over every
/// endpoint it is given, so each member gets its own client.
pub async fn connect(
    node: &Node,
    addr: SocketAddr,
    tls: Option<&TlsMaterial>,
) -> Result<Client, String> {
    let tls = tls.map(|t| {
        TlsOptions::new()
            .ca_certificate(Certificate::from_pem(&t.ca))
            .identity(Identity::from_pem(&t.cert, &t.key))
    });
    let scheme = if tls.is_some() { "https" } else { "http" };
    // The forward ends on the member's loopback, which kubeadm's server certificate names.
    client_at(&format!("{scheme}://127.0.0.1:{}", addr.port()), tls)
        .await
        .map_err(|e| format!("cannot reach etcd on {}: {e}", node.name))
}

/// A client for the one etcd endpoint at `url` (`https://` when `tls` is given).
///
/// One HTTP/2 connection, not etcd-client's balanced channel (runbook gives each client one
/// endpoint), with 16 MiB flow-control windows instead of hyper's 2 MiB: a snapshot streams
/// through an SSH forward, whose extra hops delay each window update, and with the small
/// window etcd kept stopping to wait for one (1.3 GB on 2 cores: 4.8 s with 2 MiB, 4.3 s
/// with 16 MiB, against 4.2 s for `etcdctl snapshot save` straight to the member; medians of
/// six).
pub async fn client_at(url: &str, tls: Option<TlsOptions>) -> Result<Client, String> {
    let mut endpoint = tonic::transport::Endpoint::from_shared(url.to_string())
        .map_err(|e| format!("{url}: {e}"))?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true)
        .initial_stream_window_size(WINDOW)
        .initial_connection_window_size(WINDOW);
    if let Some(tls) = tls {
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| crate::diag::error_chain(&e))?;
    }
    // tonic's own text is only "transport error": the causes say what failed.
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| crate::diag::error_chain(&e))?;
    Client::from_channel(etcd_client::Channel::Tonic(channel), None)
        .await
        .map_err(|e| e.to_string())
}

/// HTTP/2 flow-control window of each stream and of the connection.
const WINDOW: u32 = 16 << 20;

/// Reads the member's TLS material, opens its tunnel and connects a client to it.
pub async fn connect_member<E: Executor + ?Sized>(exec: &E, node: &Node) -> Result<Client, String> {
    let tls = read_tls(exec, node).await?;
    let addr = exec
        .tunnel(node, node.etcd.client_port)
        .await
        .map_err(|e| e.0)?;
    connect(node, addr, tls.as_ref()).await
}

/// One member's health and position, as preflight weighs it.
#[derive(Debug, Clone, Serialize)]
pub struct MemberStatus {
    pub node: String,
    pub member_id: String,
    pub version: String,
    pub is_leader: bool,
    pub is_learner: bool,
    pub raft_term: u64,
    pub raft_index: u64,
    pub raft_applied_index: u64,
    pub db_size: i64,
    pub db_size_quota: i64,
    pub errors: Vec<String>,
}

pub async fn status(node: &Node, client: &mut Client) -> Result<MemberStatus, String> {
    let s = client
        .status()
        .await
        .map_err(|e| format!("status of {}: {e}", node.name))?;
    let id = s.header().map(|h| h.member_id()).unwrap_or(0);
    Ok(MemberStatus {
        node: node.name.clone(),
        member_id: format!("{id:x}"),
        version: s.version().to_string(),
        is_leader: id != 0 && s.leader() == id,
        is_learner: s.is_learner(),
        raft_term: s.raft_term(),
        raft_index: s.raft_index(),
        raft_applied_index: s.raft_applied_index(),
        db_size: s.db_size(),
        db_size_quota: s.db_size_quota(),
        errors: s.errors().to_vec(),
    })
}

/// Active alarms (NOSPACE, CORRUPT) anywhere in the cluster, as `ALARM on member ID`.
pub async fn alarms(client: &mut Client) -> Result<Vec<String>, String> {
    let r = client
        .alarm(
            etcd_client::AlarmAction::Get,
            etcd_client::AlarmType::None,
            None,
        )
        .await
        .map_err(|e| format!("cannot list alarms: {e}"))?;
    Ok(r.alarms()
        .iter()
        .map(|a| format!("{:?} on member {:x}", a.alarm(), a.member_id()))
        .collect())
}

/// The member to take a snapshot from: a healthy voter, highest applied index, followers
/// before the leader (a snapshot stream is work the leader can do without).
pub fn pick_source(members: &[MemberStatus]) -> Option<&MemberStatus> {
    members
        .iter()
        .filter(|m| !m.is_learner && m.errors.is_empty())
        .max_by_key(|m| (m.raft_applied_index, !m.is_leader))
}

/// Every live key of the cluster at one revision (the first page's), read in pages of 500 in
/// key order: memory holds one page of values and the digests of all. Serializable reads: the
/// member's own state answers, also without quorum (a cluster in the outage a restore is for).
pub async fn contents(client: &mut Client) -> Result<crate::snapshot::contents::Contents, String> {
    let mut c = crate::snapshot::contents::Contents::default();
    let mut from: Vec<u8> = vec![0];
    let mut revision = 0;
    loop {
        let mut opts = etcd_client::GetOptions::new()
            .with_range(vec![0])
            .with_limit(500)
            .with_serializable();
        if revision > 0 {
            opts = opts.with_revision(revision);
        }
        let r = client
            .get(from.clone(), Some(opts))
            .await
            .map_err(|e| format!("reading the keys: {e}"))?;
        if revision == 0 {
            revision = r.header().map_or(0, |h| h.revision());
            c.revision = revision;
        }
        for kv in r.kvs() {
            c.put(kv.key(), kv.mod_revision(), kv.value());
        }
        match (r.more(), r.kvs().last()) {
            (true, Some(last)) => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => return Ok(c),
        }
    }
}

/// The live keyspace, from the first member (in inventory order) that answers; which one.
pub async fn cluster_contents<E: Executor + ?Sized>(
    exec: &E,
    members: &[&Node],
) -> Result<(String, crate::snapshot::contents::Contents), String> {
    let mut failures = Vec::new();
    for n in members {
        let read = async {
            let mut client = connect_member(exec, n).await?;
            contents(&mut client).await
        };
        match tokio::time::timeout(Duration::from_secs(60), read).await {
            Ok(Ok(c)) => return Ok((n.name.clone(), c)),
            Ok(Err(e)) => failures.push(format!("{}: {e}", n.name)),
            Err(_) => failures.push(format!("{}: no answer in 60 s", n.name)),
        }
    }
    Err(format!("no member answered: {}", failures.join("; ")))
}
