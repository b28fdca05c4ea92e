//! `wait.http`: poll a URL until it answers 2xx, e.g. kube-apiserver's /readyz.

use schemars::JsonSchema;
use serde::Deserialize;

use super::etcdctl::poll_until;
use super::{Act, Action, ActionInfo, args, schema_of, secs, ArgError, Command, Ctx, node_path, timeout_secs};
use crate::shell::quote;

pub static INFO: ActionInfo = ActionInfo {
    name: "wait.http",
    summary: "wait until a URL answers 2xx (e.g. kube-apiserver /readyz)",
    default_timeout: secs(300),
    destructive: false,
    idempotent: true,
    schema: schema_of::<Args>,
    parse: |v, ctx| Ok(Action::new(WaitHttp::new(args(v)?, ctx)?)),
};

/// Arguments of `wait.http`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(rename = "WaitHttpArgs")]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// http:// or https:// URL, fetched from the step's host.
    pub url: String,
    /// CA bundle on the host to verify an https server with.
    #[serde(default)]
    pub ca: Option<String>,
}

#[derive(Debug, Clone)]
pub struct WaitHttp {
    pub url: String,
    pub ca: Option<String>,
    pub timeout_secs: u64,
}

impl WaitHttp {
    pub fn new(args: Args, ctx: &Ctx) -> Result<Self, ArgError> {
        if !(args.url.starts_with("http://") || args.url.starts_with("https://"))
            || args
                .url
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(ArgError::field(
                "url",
                format!("{:?} is not an http(s) URL", args.url),
            ));
        }
        if let Some(ca) = &args.ca {
            node_path("ca", ca)?;
        }
        Ok(WaitHttp {
            url: args.url,
            ca: args.ca,
            timeout_secs: timeout_secs(ctx.timeout),
        })
    }
}

impl Act for WaitHttp {
    fn commands(&self) -> Vec<Command> {
        let ca = match &self.ca {
            Some(ca) => format!(" --cacert {}", quote(ca)),
            None => String::new(),
        };
        vec![Command::Shell(poll_until(
            &format!("curl -fsS --max-time 2{ca} {} >/dev/null", quote(&self.url)),
            self.timeout_secs,
        ))]
    }
}
