//! `etcd.preflight`: before touching a cluster, ask every member over etcd's API: health,
//! leader, raft term and index, database size against its quota, alarms, learners; and, when
//! the plan sets limits, what each member's /metrics says (the gate in `etcd::metrics`).

use schemars::JsonSchema;
use serde::Deserialize;

use super::{
    Act, Action, ActionInfo, ArgError, Command, Count, Ctx, Native, RunCx, Said, args, schema_of,
    secs,
};
use crate::etcd::metrics::{Gate, Signal};
use crate::executor::BoxFut;

pub static INFO: ActionInfo = ActionInfo {
    name: "etcd.preflight",
    summary: "ask every member over etcd's API (status, leader, alarms, learners); fail on any alarm or no leader",
    default_timeout: secs(60),
    destructive: false,
    idempotent: true,
    schema: schema_of::<Args>,
    parse: |v, ctx| Ok(Action::new(EtcdPreflight::new(args(v)?, ctx)?)),
};

/// Arguments of `etcd.preflight` (every etcd member of the inventory is asked).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[schemars(rename = "EtcdPreflightArgs")]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// Alarms reported but accepted, for plans that clear them (e.g. [NOSPACE]).
    #[serde(default)]
    pub allow_alarms: Vec<String>,
    /// Members not asked, by node name: the failed member a plan is about to replace.
    #[serde(default)]
    pub skip: Vec<String>,
    /// Read every member's /metrics and hold the run to these limits; absent: not read.
    #[serde(default)]
    pub metrics: Option<MetricsArgs>,
}

/// Limits on what the members' /metrics say; each one not given takes its default.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricsArgs {
    /// A member's database above this percentage of its quota (default 75).
    #[serde(default)]
    pub db_quota_percent: Option<Count>,
    /// A member's WAL fsync p99 above this many milliseconds, over its uptime (default 100).
    #[serde(default)]
    pub wal_fsync_p99_ms: Option<Count>,
    /// More leader changes per hour than this (default 0): all changes while a member is up
    /// less than an hour, its average rate after that.
    #[serde(default)]
    pub leader_changes_per_hour: Option<Count>,
    /// The limits that refuse the run; the others warn (default [db_quota_percent]). A
    /// member without a leader always refuses.
    #[serde(default)]
    pub refuse: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct EtcdPreflight {
    pub members: Vec<String>,
    pub allow_alarms: Vec<String>,
    pub skip: Vec<String>,
    pub gate: Option<Gate>,
}

fn gate(args: MetricsArgs) -> Result<Gate, ArgError> {
    let d = Gate::default();
    let limit = |c: Option<Count>, d: f64| c.map_or(d, |c| f64::from(c.0));
    let refuse = match args.refuse {
        None => d.refuse.clone(),
        Some(names) => names
            .iter()
            .map(|n| {
                Signal::ALL.into_iter().find(|s| s.name() == n).ok_or_else(|| {
                    ArgError::field("metrics", format!("`refuse` names an unknown limit {n:?}"))
                        .hint(format!(
                            "one of {}",
                            Signal::ALL.map(Signal::name).join(", ")
                        ))
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let percent = limit(args.db_quota_percent, d.db_quota_percent);
    if percent > 100.0 {
        return Err(ArgError::field(
            "metrics",
            format!("`db_quota_percent` {percent} is more than 100: etcd refuses writes at 100"),
        ));
    }
    Ok(Gate {
        db_quota_percent: percent,
        wal_fsync_p99_ms: limit(args.wal_fsync_p99_ms, d.wal_fsync_p99_ms),
        leader_changes_per_hour: limit(args.leader_changes_per_hour, d.leader_changes_per_hour),
        refuse,
    })
}

impl EtcdPreflight {
    pub fn new(args: Args, ctx: &Ctx) -> Result<Self, ArgError> {
        for a in &args.allow_alarms {
            if !matches!(a.to_ascii_uppercase().as_str(), "NOSPACE" | "CORRUPT") {
                return Err(
                    ArgError::field("allow_alarms", format!("unknown alarm {a:?}"))
                        .hint("etcd's alarms are NOSPACE and CORRUPT"),
                );
            }
        }
        let members = ctx.member_names();
        for n in &args.skip {
            if !members.contains(n) {
                return Err(ArgError::field(
                    "skip",
                    format!("{n:?} is not an etcd member of the inventory"),
                )
                .hint(format!("members: {}", members.join(", "))));
            }
        }
        if args.skip.len() >= members.len() {
            return Err(ArgError::field(
                "skip",
                "every member is skipped: nothing to ask",
            ));
        }
        Ok(EtcdPreflight {
            gate: args.metrics.map(gate).transpose()?,
            allow_alarms: args.allow_alarms,
            members: members
                .into_iter()
                .filter(|m| !args.skip.contains(m))
                .collect(),
            skip: args.skip,
        })
    }
}

impl Act for EtcdPreflight {
    fn commands(&self) -> Vec<Command> {
        let alarms = if self.allow_alarms.is_empty() {
            "fail on any alarm or no leader".to_string()
        } else {
            format!(
                "accept {} alarms, fail on any other or no leader",
                self.allow_alarms.join(", ")
            )
        };
        let gate = match &self.gate {
            None => String::new(),
            Some(g) => {
                let limits = [
                    (Signal::DbQuota, format!("db above {}% of quota", g.db_quota_percent)),
                    (Signal::WalFsync, format!("WAL fsync p99 above {} ms", g.wal_fsync_p99_ms)),
                    (
                        Signal::LeaderChanges,
                        format!("more than {} leader changes per hour", g.leader_changes_per_hour),
                    ),
                ];
                let (refuse, warn): (Vec<_>, Vec<_>) =
                    limits.into_iter().partition(|(s, _)| g.refuse.contains(s));
                let names = |l: Vec<(Signal, String)>| {
                    l.into_iter().map(|(_, t)| t).collect::<Vec<_>>().join(", ")
                };
                let mut text = "; read each member's /metrics: refuse on no leader".to_string();
                if !refuse.is_empty() {
                    text.push_str(&format!(", {}", names(refuse)));
                }
                if !warn.is_empty() {
                    text.push_str(&format!("; warn on {}", names(warn)));
                }
                text
            }
        };
        vec![Command::native(
            self.clone(),
            format!(
                "ask {} over etcd's API: status, leader, alarms (NOSPACE, CORRUPT), learners; {alarms}{}{gate}",
                self.members.join(", "),
                if self.skip.is_empty() {
                    String::new()
                } else {
                    format!(" ({} not asked)", self.skip.join(", "))
                }
            ),
        )]
    }
}

impl Native for EtcdPreflight {
    fn run<'a>(&'a self, cx: &'a RunCx<'a>) -> BoxFut<'a, Result<Said, String>> {
        Box::pin(async move {
            let members: Vec<_> = cx
                .inventory
                .etcd_members()
                .into_iter()
                .filter(|n| !self.skip.contains(&n.name))
                .collect();
            let pre = crate::etcd::preflight::run(cx.exec, &members, &self.allow_alarms).await?;
            let mut lines: Vec<String> = pre
                .members
                .iter()
                .map(crate::etcd::preflight::describe)
                .collect();
            if pre.alarms.is_empty() {
                lines.push(format!("no alarms; snapshot source: {}", pre.source));
            } else {
                lines.push(format!(
                    "alarms (accepted by this plan): {}; snapshot source: {}",
                    pre.alarms.join(", "),
                    pre.source
                ));
            }
            if let Some(gate) = &self.gate {
                let scraped = futures_util::future::join_all(
                    members
                        .iter()
                        .map(|n| crate::etcd::metrics::scrape(cx.exec, n)),
                )
                .await;
                let signals = scraped.into_iter().collect::<Result<Vec<_>, _>>()?;
                let v = gate.judge(&signals);
                lines.extend(v.lines);
                lines.extend(v.warnings.iter().map(|w| format!("warning: {w}")));
                if !v.refusals.is_empty() {
                    let mut msg = String::from("the members' metrics refuse this run:");
                    for r in &v.refusals {
                        msg.push_str(&format!("\n  - {r}"));
                    }
                    for l in &lines {
                        msg.push_str(&format!("\n  {l}"));
                    }
                    return Err(msg);
                }
            }
            Ok(Said::shown(lines.join("\n")))
        })
    }
}
