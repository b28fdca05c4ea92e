//! `etcd.verify_cluster`: after a restore, prove the cluster is the one the inventory
//! describes: every member started, healthy, and holding the same data (HashKV).

use schemars::JsonSchema;
use serde::Deserialize;

use super::etcdctl::etcdctl;
use super::{ArgError, Command, Ctx};
use crate::shell::quote;

/// Arguments of `etcd.verify_cluster` (none yet; the inventory says what to expect).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[schemars(rename = "EtcdVerifyClusterArgs")]
#[serde(deny_unknown_fields)]
pub struct Args {}

#[derive(Debug, Clone)]
pub struct EtcdVerifyCluster {
    pub etcdctl: String,
    pub members: Vec<String>,
}

impl EtcdVerifyCluster {
    pub fn new(_args: Args, ctx: &Ctx) -> Result<Self, ArgError> {
        let node = ctx.require_node("etcd.verify_cluster")?;
        let members = ctx.inventory.etcd_members();
        let endpoints: Vec<String> = members.iter().map(|n| n.client_url()).collect();
        Ok(EtcdVerifyCluster {
            etcdctl: etcdctl(&node.etcd, &endpoints),
            members: members.iter().map(|n| n.name.clone()).collect(),
        })
    }

    pub fn commands(&self) -> Vec<Command> {
        let e = &self.etcdctl;
        let names: Vec<String> = self.members.iter().map(|n| quote(n)).collect();
        let n = self.members.len();
        vec![
            // `member list` prints "ID, STATUS, NAME, PEER URLS, CLIENT URLS, IS LEARNER".
            Command::Shell(format!(
                "members=$({e} member list) || {{ echo 'cannot list members' >&2; exit 1; }}; printf '%s\\n' \"$members\"; \
test \"$(printf '%s\\n' \"$members\" | grep -c .)\" -eq {n} || {{ echo 'expected {n} members' >&2; exit 1; }}; \
for m in {}; do printf '%s\\n' \"$members\" | grep -q \", started, $m, \" || {{ echo \"member $m is not started\" >&2; exit 1; }}; done",
                names.join(" ")
            )),
            Command::Shell(format!("{e} endpoint health")),
            Command::Shell(format!("{e} endpoint status -w table")),
            // Nothing writes between restore and the API server's start, so equal data means equal hashes.
            Command::Shell(format!(
                "hashes=$({e} endpoint hashkv) || {{ echo 'cannot read HashKV' >&2; exit 1; }}; printf '%s\\n' \"$hashes\"; \
test \"$(printf '%s\\n' \"$hashes\" | awk -F', ' '{{print $2}}' | sort -u | wc -l)\" -eq 1 || {{ echo 'members disagree on HashKV' >&2; exit 1; }}"
            )),
        ]
    }
}
