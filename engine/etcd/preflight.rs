//! Preflight: every member's health, status, alarms and learners, and the member a snapshot
//! should come from. Any alarm, an unreachable member or no leader fails it, with the reason.

use std::collections::HashMap;

use etcd_client::Client;
use futures_util::future::join_all;

use super::{MemberStatus, alarms, connect_member, pick_source, status};
use crate::executor::Executor;
use crate::inventory::model::Node;

pub struct Preflight {
    pub members: Vec<MemberStatus>,
    pub alarms: Vec<String>,
    /// The chosen snapshot source.
    pub source: String,
    /// A connected client per member, for what comes next (snapshot, verification).
    pub clients: HashMap<String, Client>,
}

/// One line per member, for the operator.
pub fn describe(m: &MemberStatus) -> String {
    let quota = if m.db_size_quota > 0 {
        format!(
            " ({:.0}% of the {} MB quota)",
            100.0 * m.db_size as f64 / m.db_size_quota as f64,
            m.db_size_quota / 1_000_000
        )
    } else {
        String::new()
    };
    format!(
        "{}: member {} etcd {}{}{} term {} index {} applied {} db {} kB{quota}{}",
        m.node,
        m.member_id,
        m.version,
        if m.is_leader { " LEADER" } else { "" },
        if m.is_learner { " learner" } else { "" },
        m.raft_term,
        m.raft_index,
        m.raft_applied_index,
        m.db_size / 1000,
        if m.errors.is_empty() {
            String::new()
        } else {
            format!(" errors: {}", m.errors.join("; "))
        }
    )
}

/// The node and etcd version of a `describe` line, for the drill report.
pub fn parse_version(l: &str) -> Option<(String, String)> {
    let (node, rest) = l.split_once(": member ")?;
    let (_, rest) = rest.split_once(" etcd ")?;
    let version = rest.split(' ').next()?;
    (!node.contains(' ')).then(|| (node.to_string(), version.to_string()))
}

/// `allow`: alarm types (e.g. "NOSPACE") reported but accepted, for plans that clear them.
pub async fn run<E: Executor + ?Sized>(
    exec: &E,
    members: &[&Node],
    allow: &[String],
) -> Result<Preflight, String> {
    let reached = join_all(members.iter().map(|n| async move {
        let mut client = connect_member(exec, n).await?;
        let st = status(n, &mut client).await?;
        Ok::<_, String>((n.name.clone(), client, st))
    }))
    .await;
    let mut problems = Vec::new();
    let mut statuses = Vec::new();
    let mut clients = HashMap::new();
    for r in reached {
        match r {
            Ok((name, client, st)) => {
                statuses.push(st);
                clients.insert(name, client);
            }
            Err(e) => problems.push(e),
        }
    }
    let mut found_alarms = Vec::new();
    if let Some(c) = clients.values_mut().next() {
        found_alarms = alarms(c).await?;
    }
    let blocking: Vec<&String> = found_alarms
        .iter()
        .filter(|a| {
            !allow
                .iter()
                .any(|ok| a.to_ascii_uppercase().starts_with(&ok.to_ascii_uppercase()))
        })
        .collect();
    if !blocking.is_empty() {
        problems.push(format!(
            "active alarms: {}",
            blocking
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !statuses.is_empty() && !statuses.iter().any(|m| m.is_leader) {
        problems.push("no member reports itself leader: the cluster has no quorum".into());
    }
    // A member reports an active alarm among its errors too; an accepted alarm is no error.
    let accepted = |e: &String| {
        allow.iter().any(|a| {
            e.to_ascii_uppercase()
                .contains(&format!("ALARM:{}", a.to_ascii_uppercase()))
        })
    };
    for m in statuses.iter_mut() {
        m.errors.retain(|e| !accepted(e));
        if !m.errors.is_empty() {
            problems.push(format!(
                "{} reports errors: {}",
                m.node,
                m.errors.join("; ")
            ));
        }
    }
    if !problems.is_empty() {
        let mut msg = String::from("preflight failed:");
        for p in &problems {
            msg.push_str(&format!("\n  - {p}"));
        }
        for m in &statuses {
            msg.push_str(&format!("\n  {}", describe(m)));
        }
        return Err(msg);
    }
    let source = pick_source(&statuses)
        .map(|m| m.node.clone())
        .ok_or("no healthy voting member to take a snapshot from")?;
    Ok(Preflight {
        members: statuses,
        alarms: found_alarms,
        source,
        clients,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_read_back() {
        let m = MemberStatus {
            node: "cp1".into(),
            member_id: "8e9e05c52164694d".into(),
            version: "3.6.5".into(),
            is_leader: true,
            is_learner: false,
            raft_term: 2,
            raft_index: 9,
            raft_applied_index: 9,
            db_size: 20480,
            db_size_quota: 0,
            errors: vec![],
        };
        assert_eq!(
            parse_version(&describe(&m)),
            Some(("cp1".into(), "3.6.5".into()))
        );
        assert_eq!(parse_version("clock cp1: +0.001 s"), None);
    }
}
