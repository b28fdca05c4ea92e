//! `etcd.preflight`: before touching a cluster, ask every member over etcd's API: health,
//! leader, raft term and index, database size against its quota, alarms, learners; each
//! member's serving and peer certificates, from its files and over TLS (`etcd::certs`); every
//! node's clock against this machine's (`etcd::clock`); and, when the plan sets limits, what
//! each member's /metrics says (the gate in `etcd::metrics`).

use std::time::Duration;

use futures_util::future::join_all;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{
    Act, Action, ActionInfo, ArgError, Command, Count, Ctx, Native, RunCx, Said, args, schema_of,
    secs,
};
use crate::etcd::metrics::{Gate, Signal};
use crate::etcd::{certs, clock};
use crate::executor::BoxFut;
use crate::inventory::version::EtcdVersion;

pub static INFO: ActionInfo = ActionInfo {
    name: "etcd.preflight",
    summary: "ask every member over etcd's API (status, leader, alarms, learners), read its certificates' expiry and every node's clock; fail on any alarm, no leader, an expired certificate or a skewed clock",
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
    /// Warn when a member's serving or peer certificate expires within this many days
    /// (default 30; 0: no warning). An expired certificate always refuses the run.
    #[serde(default)]
    pub cert_warn_days: Option<Count>,
    /// Refuse when a node's clock is off this machine's by more than this many milliseconds,
    /// beyond the measurement's own uncertainty (default 2000).
    #[serde(default)]
    pub max_clock_skew_ms: Option<Count>,
    /// The etcd version a rolling change is about to move every member to: refused here,
    /// before any snapshot or member, when etcd would not support it (a skipped minor
    /// version, 3.6 from a 3.5 below 3.5.32, a downgrade not asked for) — `etcd.roll`'s rule.
    #[serde(default)]
    pub roll_to: Option<String>,
    /// With `roll_to`: the plan downgrades.
    #[serde(default)]
    pub downgrade: bool,
}

/// Certificates expiring within this many days warn.
const CERT_WARN_DAYS: u32 = 30;
/// Clocks further apart than this refuse: etcd's leases and TLS expect close clocks, and a
/// drill report's times come from both sides.
const MAX_CLOCK_SKEW_MS: u32 = 2000;

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
    pub cert_warn_days: u32,
    pub max_clock_skew: Duration,
    /// Whose clocks are read: every node of the inventory but the skipped ones.
    pub nodes: Vec<String>,
    /// A version a rolling change goes to, and whether down (`etcd::roll::judge`).
    pub roll_to: Option<(EtcdVersion, bool)>,
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
        let roll_to = args
            .roll_to
            .as_deref()
            .map(|t| super::etcd_roll::version_arg("roll_to", t))
            .transpose()?
            .map(|v| (v, args.downgrade));
        if args.downgrade && roll_to.is_none() {
            return Err(ArgError::field(
                "downgrade",
                "`downgrade: true` needs `roll_to`, the version to go down to",
            ));
        }
        Ok(EtcdPreflight {
            roll_to,
            gate: args.metrics.map(gate).transpose()?,
            cert_warn_days: args.cert_warn_days.map_or(CERT_WARN_DAYS, |c| c.0),
            max_clock_skew: Duration::from_millis(u64::from(
                args.max_clock_skew_ms.map_or(MAX_CLOCK_SKEW_MS, |c| c.0),
            )),
            nodes: ctx
                .inventory
                .nodes
                .iter()
                .map(|n| n.name.clone())
                .filter(|n| !args.skip.contains(n))
                .collect(),
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
        let warn = if self.cert_warn_days == 0 {
            String::new()
        } else {
            format!(", warn under {} days", self.cert_warn_days)
        };
        let roll = match self.roll_to {
            None => String::new(),
            Some((v, down)) => format!(
                "; refuse unless etcd supports {} from the members' versions to {v}",
                if down { "a downgrade" } else { "a rolling change" }
            ),
        };
        vec![Command::native(
            self.clone(),
            format!(
                "ask {} over etcd's API: status, leader, alarms (NOSPACE, CORRUPT), learners; {alarms}{}; \
                 read each member's serving and peer certificates from the files its etcd.yaml names \
                 and in a TLS handshake on its client and peer ports: refuse expired{warn}; \
                 read the clock of {} (date +%s.%N): refuse beyond {} of this machine's{gate}{roll}",
                self.members.join(", "),
                if self.skip.is_empty() {
                    String::new()
                } else {
                    format!(" ({} not asked)", self.skip.join(", "))
                },
                self.nodes.join(", "),
                humantime::format_duration(self.max_clock_skew),
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
            let nodes: Vec<_> = cx
                .inventory
                .nodes
                .iter()
                .filter(|n| self.nodes.contains(&n.name))
                .collect();
            // The three are independent and each a few round trips: asked at once.
            let (pre, read, clocks) = tokio::join!(
                crate::etcd::preflight::run(cx.exec, &members, &self.allow_alarms),
                join_all(members.iter().map(|n| certs::read(cx.exec, n))),
                join_all(nodes.iter().map(|n| clock::measure(cx.exec, n))),
            );
            let mut lines = Vec::new();
            let mut warnings = Vec::new();
            // Refusals by what refuses: each group is a paragraph of the message.
            let mut refusals: Vec<(&str, Vec<String>)> = Vec::new();
            let mut failed = None;
            match &pre {
                Ok(pre) => {
                    lines.extend(pre.members.iter().map(crate::etcd::preflight::describe));
                    if let Some((target, down)) = self.roll_to {
                        let versions = crate::etcd::roll::versions_of(&pre.members)?;
                        match crate::etcd::roll::judge(&versions, target, down) {
                            Ok(_) => lines.push(format!(
                                "etcd {target} is a supported {} from what the members run",
                                if down { "downgrade" } else { "change" }
                            )),
                            Err(e) => refusals.push(("the members' versions refuse this run:", vec![e])),
                        }
                    }
                    if pre.alarms.is_empty() {
                        lines.push(format!("no alarms; snapshot source: {}", pre.source));
                    } else {
                        lines.push(format!(
                            "alarms (accepted by this plan): {}; snapshot source: {}",
                            pre.alarms.join(", "),
                            pre.source
                        ));
                    }
                }
                Err(e) => failed = Some(e.clone()),
            }
            let (found, notes): (Vec<_>, Vec<_>) = read.into_iter().unzip();
            let found: Vec<_> = found.into_iter().flatten().collect();
            let notes: Vec<_> = notes.into_iter().flatten().collect();
            let c = certs::judge(&found, &notes, certs::now_unix(), self.cert_warn_days);
            lines.extend(c.lines);
            warnings.extend(c.warnings);
            refusals.push(("the members' certificates refuse this run:", c.refusals));
            let mut offsets = Vec::new();
            for r in clocks {
                match r {
                    Ok(o) => offsets.push(o),
                    Err(e) => warnings.push(e),
                }
            }
            let (clock_lines, clock_refusals) = clock::judge(&offsets, self.max_clock_skew);
            lines.extend(clock_lines);
            refusals.push(("the nodes' clocks refuse this run:", clock_refusals));
            if let (Some(gate), Ok(_)) = (&self.gate, &pre) {
                let scraped = join_all(
                    members
                        .iter()
                        .map(|n| crate::etcd::metrics::scrape(cx.exec, n)),
                )
                .await;
                let signals = scraped.into_iter().collect::<Result<Vec<_>, _>>()?;
                let v = gate.judge(&signals);
                lines.extend(v.lines);
                warnings.extend(v.warnings);
                refusals.push(("the members' metrics refuse this run:", v.refusals));
            }
            lines.extend(warnings.iter().map(|w| format!("warning: {w}")));
            refusals.retain(|(_, r)| !r.is_empty());
            if failed.is_some() || !refusals.is_empty() {
                // The first line says the first reason (a report's failure shows that line).
                let all: Vec<&String> = refusals.iter().flat_map(|(_, r)| r).collect();
                let mut msg = match (failed, all.first()) {
                    (Some(f), _) => format!("{f}\n"),
                    (None, Some(first)) if all.len() == 1 => format!("{first}\n"),
                    (None, Some(first)) => {
                        format!("{first} (and {} more below)\n", all.len() - 1)
                    }
                    (None, None) => String::new(),
                };
                for (header, rs) in &refusals {
                    msg.push_str(header);
                    for r in rs {
                        msg.push_str(&format!("\n  - {r}"));
                    }
                    msg.push('\n');
                }
                msg.push_str("what preflight read:");
                for l in &lines {
                    msg.push_str(&format!("\n  {l}"));
                }
                return Err(msg);
            }
            Ok(Said::shown(lines.join("\n")))
        })
    }
}
