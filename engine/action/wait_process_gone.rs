//! `wait.process_gone`: wait until a process has really exited on the node (kubelet stops
//! a static pod asynchronously; etcd may take seconds to flush and exit).

use schemars::JsonSchema;
use serde::Deserialize;

use super::etcdctl::poll_until;
use super::{Act, Action, ActionInfo, args, schema_of, secs, ArgError, Command, Ctx, timeout_secs};
use crate::shell::quote;

pub static INFO: ActionInfo = ActionInfo {
    name: "wait.process_gone",
    summary: "wait until no process of that name runs on the node",
    default_timeout: secs(120),
    destructive: false,
    idempotent: true,
    schema: schema_of::<Args>,
    parse: |v, ctx| Ok(Action::new(WaitProcessGone::new(args(v)?, ctx)?)),
};

/// Arguments of `wait.process_gone`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(rename = "WaitProcessGoneArgs")]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// Process name as the kernel knows it (`comm`, at most 15 characters), e.g. etcd.
    pub process: String,
}

#[derive(Debug, Clone)]
pub struct WaitProcessGone {
    pub process: String,
    pub timeout_secs: u64,
}

impl WaitProcessGone {
    pub fn new(args: Args, ctx: &Ctx) -> Result<Self, ArgError> {
        ctx.require_node("wait.process_gone")?;
        let p = &args.process;
        if p.is_empty()
            || p.len() > 15
            || !p
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(ArgError::field(
                "process",
                format!("{p:?} is not a process name pgrep -x can match"),
            )
            .hint(
                "use the executable's name, at most 15 characters, e.g. etcd or kube-apiserver",
            ));
        }
        Ok(WaitProcessGone {
            process: args.process,
            timeout_secs: timeout_secs(ctx.timeout),
        })
    }
}

impl Act for WaitProcessGone {
    fn commands(&self) -> Vec<Command> {
        vec![Command::Shell(poll_until(
            &format!("! pgrep -x {} >/dev/null", quote(&self.process)),
            self.timeout_secs,
        ))]
    }
}
