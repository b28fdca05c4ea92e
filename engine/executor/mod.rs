//! The seam between the walk and the hosts: one trait, three implementations (dry-run, local, SSH).
//!
//! The scheduler hands an executor a target, a shell script, its environment and a time
//! limit, or a native operation (file upload). It never knows how the work reaches the host,
//! which is why dry-run, local and SSH runs walk exactly the same graph.

pub mod dry_run;
pub mod local;
pub mod ssh;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use crate::inventory::model::Node;
use crate::shell::quote;

/// Where a command runs.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// The operator's machine (`on: local` steps).
    Local,
    Node(&'a Node),
}

impl Target<'_> {
    pub fn name(&self) -> &str {
        match self {
            Target::Local => "local",
            Target::Node(n) => &n.name,
        }
    }
}

/// How a command ended.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The exit status; `None` when the process was killed by a signal.
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The step's time limit ran out (the host's `timeout` fired, or the host stopped answering).
    pub timed_out: bool,
}

impl Outcome {
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }
}

/// The host could not be reached or the transport broke; the command's fate is unknown.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ExecError(pub String);

/// One way of doing a step's work on its hosts.
pub trait Executor: Send + Sync {
    /// Opens whatever the nodes need (one SSH master each), all at once, each bounded by its
    /// connect timeout. Returns the nodes that could not be reached, with why.
    fn connect<'a>(
        &'a self,
        nodes: &'a [&'a Node],
    ) -> impl Future<Output = Vec<(String, ExecError)>> + Send + 'a;

    /// Runs `script` with `sh -c` on the target, with `env` exported, for at most `timeout`.
    fn shell<'a>(
        &'a self,
        target: Target<'a>,
        script: &'a str,
        env: &'a [(String, String)],
        timeout: Duration,
    ) -> impl Future<Output = Result<Outcome, ExecError>> + Send + 'a;

    /// Copies a local file to `dest` on the node: written beside it, mode 0600, fsynced, renamed.
    fn upload<'a>(
        &'a self,
        node: &'a Node,
        source: &'a Path,
        dest: &'a str,
    ) -> impl Future<Output = Result<(), ExecError>> + Send + 'a;

    /// A local address that reaches `port` on the node's loopback: an SSH local forward over
    /// the node's master (opened once per node and port), or the port itself when local.
    fn tunnel<'a>(
        &'a self,
        node: &'a Node,
        port: u16,
    ) -> impl Future<Output = Result<std::net::SocketAddr, ExecError>> + Send + 'a {
        self.tunnel_to(node, "127.0.0.1", port)
    }

    /// A local address that reaches `host:port` as the node sees it (e.g. a member's peer
    /// port, which listens on the node's own address, not on its loopback).
    fn tunnel_to<'a>(
        &'a self,
        node: &'a Node,
        host: &'a str,
        port: u16,
    ) -> impl Future<Output = Result<std::net::SocketAddr, ExecError>> + Send + 'a;

    /// Closes connections (SSH masters); called on every exit path, Ctrl-C included.
    fn close(&self) -> impl Future<Output = ()> + Send + '_;

    /// Runs work runbook does itself for a step (native checks, run-time values). A dry-run
    /// leaves it undone and answers `None`: that is the only difference the walk sees.
    fn own_work<'a, T: Send + 'a>(
        &'a self,
        work: impl Future<Output = T> + Send + 'a,
    ) -> impl Future<Output = Option<T>> + Send + 'a {
        async move { Some(work.await) }
    }
}

/// A boxed future, for trait objects.
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The executor as a trait object: what actions' native work holds (an action is a trait
/// object too, so it cannot be generic over the executor). Every `Executor` is a `Host`, and
/// a `dyn Host` is an `Executor` again for the etcd helpers.
pub trait Host: Send + Sync {
    fn connect_boxed<'a>(&'a self, nodes: &'a [&'a Node]) -> BoxFut<'a, Vec<(String, ExecError)>>;
    fn shell_boxed<'a>(
        &'a self,
        target: Target<'a>,
        script: &'a str,
        env: &'a [(String, String)],
        timeout: Duration,
    ) -> BoxFut<'a, Result<Outcome, ExecError>>;
    fn upload_boxed<'a>(
        &'a self,
        node: &'a Node,
        source: &'a Path,
        dest: &'a str,
    ) -> BoxFut<'a, Result<(), ExecError>>;
    fn tunnel_boxed<'a>(
        &'a self,
        node: &'a Node,
        host: &'a str,
        port: u16,
    ) -> BoxFut<'a, Result<std::net::SocketAddr, ExecError>>;
    fn close_boxed(&self) -> BoxFut<'_, ()>;
}

impl<E: Executor> Host for E {
    fn connect_boxed<'a>(&'a self, nodes: &'a [&'a Node]) -> BoxFut<'a, Vec<(String, ExecError)>> {
        Box::pin(self.connect(nodes))
    }

    fn shell_boxed<'a>(
        &'a self,
        target: Target<'a>,
        script: &'a str,
        env: &'a [(String, String)],
        timeout: Duration,
    ) -> BoxFut<'a, Result<Outcome, ExecError>> {
        Box::pin(self.shell(target, script, env, timeout))
    }

    fn upload_boxed<'a>(
        &'a self,
        node: &'a Node,
        source: &'a Path,
        dest: &'a str,
    ) -> BoxFut<'a, Result<(), ExecError>> {
        Box::pin(self.upload(node, source, dest))
    }

    fn tunnel_boxed<'a>(
        &'a self,
        node: &'a Node,
        host: &'a str,
        port: u16,
    ) -> BoxFut<'a, Result<std::net::SocketAddr, ExecError>> {
        Box::pin(self.tunnel_to(node, host, port))
    }

    fn close_boxed(&self) -> BoxFut<'_, ()> {
        Box::pin(self.close())
    }
}

impl Executor for dyn Host + '_ {
    fn connect<'a>(
        &'a self,
        nodes: &'a [&'a Node],
    ) -> impl Future<Output = Vec<(String, ExecError)>> + Send + 'a {
        self.connect_boxed(nodes)
    }

    fn shell<'a>(
        &'a self,
        target: Target<'a>,
        script: &'a str,
        env: &'a [(String, String)],
        timeout: Duration,
    ) -> impl Future<Output = Result<Outcome, ExecError>> + Send + 'a {
        self.shell_boxed(target, script, env, timeout)
    }

    fn upload<'a>(
        &'a self,
        node: &'a Node,
        source: &'a Path,
        dest: &'a str,
    ) -> impl Future<Output = Result<(), ExecError>> + Send + 'a {
        self.upload_boxed(node, source, dest)
    }

    fn tunnel_to<'a>(
        &'a self,
        node: &'a Node,
        host: &'a str,
        port: u16,
    ) -> impl Future<Output = Result<std::net::SocketAddr, ExecError>> + Send + 'a {
        self.tunnel_boxed(node, host, port)
    }

    fn close(&self) -> impl Future<Output = ()> + Send + '_ {
        self.close_boxed()
    }
}

/// Runs a short script of runbook's own on a node (30 s at most) and returns its stdout;
/// any failure is an error saying `what` failed there, with the host's stderr.
pub async fn output_on<E: Executor + ?Sized>(
    exec: &E,
    node: &Node,
    script: &str,
    what: &str,
) -> Result<Vec<u8>, String> {
    let out = exec
        .shell(Target::Node(node), script, &[], Duration::from_secs(30))
        .await
        .map_err(|e| e.0)?;
    if !out.success() {
        return Err(format!(
            "{what} on {}: {}",
            node.name,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out.stdout)
}

/// The command line a host runs: environment exported, then the script under coreutils
/// `timeout`, so the host itself kills the work when the step's time is up even if this
/// machine has gone away.
pub fn wrapped(script: &str, env: &[(String, String)], timeout: Duration) -> String {
    let mut line = String::new();
    for (k, v) in env {
        line.push_str(&format!("export {k}={}; ", quote(v)));
    }
    let secs = timeout.as_secs().max(1);
    line.push_str(&format!("exec timeout -k 5 {secs} sh -c {}", quote(script)));
    line
}

/// `timeout` exits 124 when it had to stop the command; 137 when it had to kill it.
pub fn timed_out_code(code: Option<i32>) -> bool {
    matches!(code, Some(124) | Some(137))
}

/// Expands a leading `~/` the way ssh does, for paths written in inventories.
pub fn expand_home(path: &str) -> String {
    match (path.strip_prefix("~/"), std::env::var("HOME")) {
        (Some(rest), Ok(home)) => format!("{}/{rest}", home.trim_end_matches('/')),
        _ => path.to_string(),
    }
}
