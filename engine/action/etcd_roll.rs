//! `etcd.roll`: change every member in turn — its etcd version (an upgrade, or a downgrade
//! with etcd's own protocol) or its flags — followers first and the leader last, each member
//! healthy, caught up and serving quorum reads before the next (`etcd::roll`).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use super::manifest::{ETCD_MANIFEST, manifest_name, parking_dir};
use super::manifest_flags::check_edit;
use super::{
    Act, Action, ActionInfo, ArgError, Command, Count, Ctx, Native, RunCx, Said, args, schema_of,
    secs,
};
use crate::etcd::roll::Change;
use crate::executor::BoxFut;
use crate::inventory::version::EtcdVersion;

pub static INFO: ActionInfo = ActionInfo {
    name: "etcd.roll",
    summary: "change every member's etcd version (upgrade; downgrade with etcd's protocol) or flags in its manifest, one member at a time, followers first and the leader last, each back and caught up before the next",
    default_timeout: secs(1800),
    destructive: true,
    idempotent: true,
    schema: schema_of::<Args>,
    parse: |v, ctx| Ok(Action::new(EtcdRoll::new(args(v)?, ctx)?)),
};

/// The largest backend quota etcd's documentation recommends; etcd warns above it.
pub const QUOTA_WARN_BYTES: u64 = 8 * 1024 * 1024 * 1024;
/// etcd refuses an election timeout above this (ms).
const MAX_ELECTION_MS: u64 = 50_000;

/// Arguments of `etcd.roll`: a version, flags, or both.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[schemars(rename = "EtcdRollArgs")]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// The etcd version every member runs after the step, e.g. "3.6.16": the manifest's image
    /// keeps its repository and gets kubeadm's tag `<version>-0`.
    #[serde(default)]
    pub version: Option<String>,
    /// A version lower than a member's is refused unless this is true; a minor downgrade then
    /// uses etcd's downgrade protocol (validate, enable, storage migrated) first.
    #[serde(default)]
    pub downgrade: bool,
    /// Flags to set, without the leading `--`: `{ quota-backend-bytes: "8589934592" }`, or
    /// as one string of `flag=value` words (what a plan parameter carries).
    #[serde(default)]
    pub set: Flags,
    /// Flags to drop, without the leading `--`: a list, or one string of words.
    #[serde(default)]
    pub remove: Names,
    /// A member is caught up when its applied raft index is within this many entries of
    /// the leader's (default 1000).
    #[serde(default)]
    pub max_lag: Option<Count>,
    /// Seconds one member may take to come back (default 300); past it the roll stops
    /// there, before the next member.
    #[serde(default)]
    pub member_timeout: Option<Count>,
    /// The manifest's file name (default etcd.yaml).
    #[serde(default)]
    pub manifest: Option<String>,
    /// Where the manifest before the change is kept (default: `<manifests_dir>/../runbook-parked`).
    #[serde(default)]
    pub parking_dir: Option<String>,
}

/// Flags to set: a map, or `"flag=value flag=value"`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Flags {
    Map(BTreeMap<String, String>),
    Words(String),
}

impl Default for Flags {
    fn default() -> Self {
        Flags::Map(BTreeMap::new())
    }
}

impl Flags {
    fn into_map(self) -> Result<BTreeMap<String, String>, ArgError> {
        match self {
            Flags::Map(m) => Ok(m),
            Flags::Words(w) => w
                .split_whitespace()
                .map(|word| {
                    let word = word.trim_start_matches("--");
                    word.split_once('=')
                        .map(|(f, v)| (f.to_string(), v.to_string()))
                        .ok_or_else(|| {
                            ArgError::field("set", format!("{word:?} is not flag=value"))
                                .hint("e.g. \"quota-backend-bytes=8589934592 auto-compaction-mode=periodic\"")
                        })
                })
                .collect(),
        }
    }
}

/// Flags to drop: a list, or `"flag flag"`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Names {
    List(Vec<String>),
    Words(String),
}

impl Default for Names {
    fn default() -> Self {
        Names::List(Vec::new())
    }
}

impl Names {
    fn into_vec(self) -> Vec<String> {
        match self {
            Names::List(l) => l,
            Names::Words(w) => w
                .split_whitespace()
                .map(|f| f.trim_start_matches("--").to_string())
                .collect(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct EtcdRoll {
    pub change: Change,
    pub members: Vec<String>,
}

/// An etcd version given as an argument (`field`), or the located refusal.
pub fn version_arg(field: &str, text: &str) -> Result<EtcdVersion, ArgError> {
    EtcdVersion::parse(text).map_err(|e| {
        ArgError::field(field, format!("{text:?} is not an etcd version: {e}"))
            .hint("major.minor.patch, e.g. 3.6.16")
    })
}

/// A whole number of a flag's value, or the located refusal.
fn number(flag: &str, v: &str) -> Result<u64, ArgError> {
    v.parse::<u64>().map_err(|_| {
        ArgError::field("set", format!("{flag} must be a whole number, not {v:?}"))
    })
}

/// Refuses flag values etcd itself would refuse at start (a member that does not come back),
/// before anything is touched.
fn check_values(set: &BTreeMap<String, String>) -> Result<(), ArgError> {
    if let Some(v) = set.get("quota-backend-bytes") {
        number("quota-backend-bytes", v)?;
    }
    let heartbeat = set
        .get("heartbeat-interval")
        .map(|v| number("heartbeat-interval", v))
        .transpose()?;
    let election = set
        .get("election-timeout")
        .map(|v| number("election-timeout", v))
        .transpose()?;
    if let Some(e) = election
        && e > MAX_ELECTION_MS
    {
        return Err(ArgError::field(
            "set",
            format!("election-timeout {e} ms: etcd refuses more than {MAX_ELECTION_MS} ms"),
        ));
    }
    // etcd's defaults (100 and 1000 ms) stand in for the one not given.
    let (h, e) = (heartbeat.unwrap_or(100), election.unwrap_or(1000));
    if (heartbeat.is_some() || election.is_some()) && e < 5 * h {
        return Err(ArgError::field(
            "set",
            format!("election-timeout {e} ms is less than 5 times heartbeat-interval {h} ms: etcd refuses to start"),
        )
        .hint("etcd's tuning guide: an election timeout of at least 10 heartbeats, both set together"));
    }
    if let Some(mode) = set.get("auto-compaction-mode")
        && mode != "periodic"
        && mode != "revision"
    {
        return Err(ArgError::field(
            "set",
            format!("auto-compaction-mode {mode:?}: etcd knows periodic and revision"),
        ));
    }
    Ok(())
}

impl EtcdRoll {
    pub fn new(args: Args, ctx: &Ctx) -> Result<Self, ArgError> {
        if ctx.node.is_some() {
            return Err(ArgError {
                field: None,
                message: "`etcd.roll` goes over every member itself, in an order known at run time".into(),
                hint: Some("run it once, `on: local`, without `for_each`".into()),
            });
        }
        let version = args
            .version
            .as_deref()
            .map(|t| version_arg("version", t))
            .transpose()?;
        let set = args.set.into_map()?;
        let remove = args.remove.into_vec();
        if version.is_none() && set.is_empty() && remove.is_empty() {
            return Err(ArgError::field(
                "version",
                "nothing to change: no `version`, `set` or `remove`",
            )
            .hint("e.g. version: \"3.6.16\", or set: { quota-backend-bytes: \"8589934592\" }"));
        }
        if args.downgrade && version.is_none() {
            return Err(ArgError::field(
                "downgrade",
                "`downgrade: true` needs the `version` to go down to",
            ));
        }
        check_edit(&set, &remove)?;
        check_values(&set)?;
        let manifest = args.manifest.unwrap_or_else(|| ETCD_MANIFEST.into());
        manifest_name("manifest", &manifest)?;
        let mut parking_dirs = BTreeMap::new();
        for n in ctx.inventory.etcd_members() {
            if let crate::inventory::model::Runtime::Systemd { unit, env_file } = &n.etcd.runtime {
                // A unit's flags are in its environment file and its version is whatever
                // binary the unit runs: a rolling change of those is not made here yet.
                return Err(ArgError::field(
                    "version",
                    format!(
                        "etcd.roll changes static pod members; {} runs etcd as the systemd unit {unit}",
                        n.name
                    ),
                )
                .hint(format!(
                    "change such members one at a time by hand: `etcd.stop`, edit {env_file} (`etcd.flags`) or replace the binary, `etcd.start`, `wait.etcd_healthy`"
                )));
            }
            parking_dirs.insert(n.name.clone(), parking_dir(n, args.parking_dir.clone())?);
        }
        Ok(EtcdRoll {
            change: Change {
                version,
                set: set.into_iter().collect(),
                remove,
                downgrade: args.downgrade,
                max_lag: args.max_lag.map_or(1000, |c| u64::from(c.0)),
                member_timeout: std::time::Duration::from_secs(
                    args.member_timeout.map_or(300, |c| u64::from(c.0)),
                ),
                manifest,
                parking_dirs,
            },
            members: ctx.member_names(),
        })
    }

    /// The quota asked for, when it is above what etcd recommends (a lint warns).
    pub fn quota_above_recommended(&self) -> Option<u64> {
        self.change
            .set
            .iter()
            .find(|(f, _)| f == "quota-backend-bytes")
            .and_then(|(_, v)| v.parse::<u64>().ok())
            .filter(|q| *q > QUOTA_WARN_BYTES)
    }
}

impl Act for EtcdRoll {
    fn commands(&self) -> Vec<Command> {
        let c = &self.change;
        let mut what = Vec::new();
        if let Some(v) = c.version {
            what.push(if c.downgrade {
                format!("etcd {v} (a downgrade: `downgrade validate` and `downgrade enable` first when a minor version goes, then storage migrated on every member)")
            } else {
                format!("etcd {v} (refused if a minor version would be skipped, or 3.6 from a 3.5 below {})", crate::etcd::roll::MIN_3_5_FOR_3_6)
            });
        }
        if !c.set.is_empty() {
            what.push(
                c.set
                    .iter()
                    .map(|(f, v)| format!("--{f}={v}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            );
        }
        if !c.remove.is_empty() {
            what.push(format!("without --{}", c.remove.join(", --")));
        }
        vec![Command::native(
            self.clone(),
            format!(
                "roll {} to {} in their {} manifests: one member at a time, followers first and the leader last (leadership handed over first), each only while every other member answers; a member already so is left alone; each member runs a new etcd process{}{}, is within {} entries of the leader's index and serves a quorum read before the next (at most {}s, or the roll stops there); the manifest before the change is kept in the parking directory",
                self.members.join(", "),
                what.join("; "),
                c.manifest,
                if c.set.is_empty() && c.remove.is_empty() {
                    ""
                } else {
                    " with those flags"
                },
                if c.version.is_some() {
                    ", answers as that version"
                } else {
                    ""
                },
                c.max_lag,
                c.member_timeout.as_secs()
            ),
        )]
    }
}

impl Native for EtcdRoll {
    fn run<'a>(&'a self, cx: &'a RunCx<'a>) -> BoxFut<'a, Result<Said, String>> {
        Box::pin(async move {
            crate::etcd::roll::roll(cx.exec, cx.inventory, &self.change, cx.deadline)
                .await
                .map(Said::shown)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn refuses_what_etcd_refuses_at_start() {
        let err = |p: &[(&str, &str)]| check_values(&set(p)).unwrap_err().message;
        assert!(err(&[("election-timeout", "400")]).contains("less than 5 times"));
        assert!(
            err(&[("heartbeat-interval", "300"), ("election-timeout", "1000")])
                .contains("less than 5 times")
        );
        assert!(err(&[("election-timeout", "60000"), ("heartbeat-interval", "500")])
            .contains("more than 50000"));
        assert!(err(&[("quota-backend-bytes", "8G")]).contains("whole number"));
        assert!(err(&[("auto-compaction-mode", "daily")]).contains("periodic and revision"));
        assert!(check_values(&set(&[
            ("heartbeat-interval", "250"),
            ("election-timeout", "2500"),
            ("quota-backend-bytes", "10737418240"),
            ("auto-compaction-mode", "periodic"),
            ("auto-compaction-retention", "8h"),
        ]))
        .is_ok());
    }
}
