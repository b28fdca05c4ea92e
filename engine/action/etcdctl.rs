//! The etcdctl command line with the node's endpoints and client certificates: one place
//! for how runbook talks to etcd through the node's own tools.

use crate::inventory::model::EtcdConfig;
use crate::shell::quote;

/// `etcdctl --endpoints=... [--cacert/--cert/--key]`, every value quoted.
pub fn etcdctl(cfg: &EtcdConfig, endpoints: &[String]) -> String {
    let mut words = vec![quote(&cfg.etcdctl)];
    words.push(format!("--endpoints={}", quote(&endpoints.join(","))));
    if let Some(tls) = &cfg.tls {
        words.push(format!("--cacert={}", quote(&tls.ca)));
        words.push(format!("--cert={}", quote(&tls.cert)));
        words.push(format!("--key={}", quote(&tls.key)));
    }
    words.join(" ")
}

/// `timeout N sh -c 'until CHECK; do sleep 0.1; done'`: poll a check until it passes or time runs out.
/// Every restore waits four times (apiserver gone, etcd gone, etcd healthy, apiserver ready):
/// a 0.5 s poll cost about a second per restore in the lab; the checks are cheap enough for 10 Hz.
pub fn poll_until(check: &str, timeout_secs: u64) -> String {
    format!(
        "timeout {timeout_secs} sh -c {}",
        quote(&format!("until {check}; do sleep 0.1; done"))
    )
}
