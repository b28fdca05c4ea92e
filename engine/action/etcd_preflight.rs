//! `etcd.preflight`: before touching a cluster, ask every member over etcd's API: health,
//! leader, raft term and index, database size against its quota, alarms, learners.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{Act, Action, ActionInfo, args, schema_of, secs, RunCx, Said, ArgError, Command, Ctx, Native};
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
}

#[derive(Debug, Clone)]
pub struct EtcdPreflight {
    pub members: Vec<String>,
    pub allow_alarms: Vec<String>,
    pub skip: Vec<String>,
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
        vec![Command::native(
            self.clone(),
            format!(
                "ask {} over etcd's API: status, leader, alarms (NOSPACE, CORRUPT), learners; {alarms}{}",
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
            Ok(Said::shown(lines.join("\n")))
        })
    }
}
