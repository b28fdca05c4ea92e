//! `wait.http`: poll a URL until it answers 2xx, e.g. kube-apiserver's /readyz.

use schemars::JsonSchema;
use serde::Deserialize;

use super::etcdctl::poll_until;
use super::{ArgError, Command, Ctx, node_path, timeout_secs};
use crate::shell::quote;

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

    pub fn commands(&self) -> Vec<Command> {
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
