//! `etcd.preflight`: before touching a cluster, ask every member over etcd's API: health,
//! leader, raft term and index, database size against its quota, alarms, learners.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{ArgError, Command, Ctx, Native};

/// Arguments of `etcd.preflight` (every etcd member of the inventory is asked).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[schemars(rename = "EtcdPreflightArgs")]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// Alarms reported but accepted, for plans that clear them (e.g. [NOSPACE]).
    #[serde(default)]
    pub allow_alarms: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct EtcdPreflight {
    pub members: Vec<String>,
    pub allow_alarms: Vec<String>,
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
        Ok(EtcdPreflight {
            allow_alarms: args.allow_alarms,
            members: ctx.member_names(),
        })
    }

    pub fn commands(&self) -> Vec<Command> {
        let alarms = if self.allow_alarms.is_empty() {
            "fail on any alarm or no leader".to_string()
        } else {
            format!(
                "accept {} alarms, fail on any other or no leader",
                self.allow_alarms.join(", ")
            )
        };
        vec![Command::native(
            Native::Preflight {
                allow_alarms: self.allow_alarms.clone(),
            },
            format!(
                "ask {} over etcd's API: status, leader, alarms (NOSPACE, CORRUPT), learners; {alarms}",
                self.members.join(", ")
            ),
        )]
    }
}
