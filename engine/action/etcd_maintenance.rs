//! `etcd.compact` and `etcd.check_writes`: the two steps around a defrag that a NOSPACE
//! recovery needs — drop old revisions first, prove the cluster takes writes last.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{
    Act, Action, ActionInfo, ArgError, Command, Ctx, Native, RunCx, Said, args, schema_of, secs,
};
use crate::executor::BoxFut;

pub static COMPACT: ActionInfo = ActionInfo {
    name: "etcd.compact",
    summary: "compact the keyspace to the current revision over etcd's API (old revisions are gone for good)",
    default_timeout: secs(600),
    destructive: true,
    idempotent: true,
    schema: schema_of::<Args>,
    parse: |v, ctx| Ok(Action::new(EtcdCompact::new(args(v)?, ctx)?)),
};

pub static CHECK_WRITES: ActionInfo = ActionInfo {
    name: "etcd.check_writes",
    summary: "put a probe key, read it back from every member, delete it: the cluster takes writes",
    default_timeout: secs(60),
    destructive: false,
    idempotent: true,
    schema: schema_of::<Args>,
    parse: |v, ctx| Ok(Action::new(EtcdCheckWrites::new(args(v)?, ctx)?)),
};

/// Arguments of `etcd.compact` and `etcd.check_writes` (none).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[schemars(rename = "EtcdMaintenanceArgs")]
#[serde(deny_unknown_fields)]
pub struct Args {}

#[derive(Debug, Clone)]
pub struct EtcdCompact;

impl EtcdCompact {
    pub fn new(_args: Args, _ctx: &Ctx) -> Result<Self, ArgError> {
        Ok(EtcdCompact)
    }
}

impl Act for EtcdCompact {
    fn commands(&self) -> Vec<Command> {
        vec![Command::native(
            self.clone(),
            "compact the keyspace to the current revision over etcd's API (physical: wait until members applied it)".into(),
        )]
    }
}

#[derive(Debug, Clone)]
pub struct EtcdCheckWrites;

impl EtcdCheckWrites {
    pub fn new(_args: Args, _ctx: &Ctx) -> Result<Self, ArgError> {
        Ok(EtcdCheckWrites)
    }
}

impl Act for EtcdCheckWrites {
    fn commands(&self) -> Vec<Command> {
        vec![Command::native(
            self.clone(),
            "put a probe key, read it back from every member, delete it".into(),
        )]
    }
}

impl Native for EtcdCompact {
    fn run<'a>(&'a self, cx: &'a RunCx<'a>) -> BoxFut<'a, Result<Said, String>> {
        Box::pin(async move {
            crate::etcd::maintenance::compact(cx.exec, cx.inventory)
                .await
                .map(Said::shown)
        })
    }
}

impl Native for EtcdCheckWrites {
    fn run<'a>(&'a self, cx: &'a RunCx<'a>) -> BoxFut<'a, Result<Said, String>> {
        Box::pin(async move {
            crate::etcd::maintenance::check_writes(cx.exec, cx.inventory)
                .await
                .map(Said::shown)
        })
    }
}
