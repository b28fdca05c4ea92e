//! The dry-run executor: walks the graph like a real run and reaches no host.

use std::path::Path;
use std::time::Duration;

use super::{ExecError, Executor, Outcome, Target};
use crate::inventory::model::Node;

/// Succeeds at everything without doing anything; the walk prints what would run.
#[derive(Debug, Default)]
pub struct DryRun;

impl Executor for DryRun {
    async fn connect<'a>(&'a self, _nodes: &'a [&'a Node]) -> Vec<(String, ExecError)> {
        Vec::new()
    }

    async fn shell<'a>(
        &'a self,
        _target: Target<'a>,
        _script: &'a str,
        _env: &'a [(String, String)],
        _timeout: Duration,
    ) -> Result<Outcome, ExecError> {
        Ok(Outcome {
            code: Some(0),
            ..Outcome::default()
        })
    }

    async fn upload<'a>(
        &'a self,
        _node: &'a Node,
        _source: &'a Path,
        _dest: &'a str,
    ) -> Result<(), ExecError> {
        Ok(())
    }

    async fn tunnel_to<'a>(
        &'a self,
        node: &'a Node,
        _host: &'a str,
        _port: u16,
    ) -> Result<std::net::SocketAddr, ExecError> {
        Err(ExecError(format!(
            "dry-run: no connection to {}",
            node.name
        )))
    }

    async fn close(&self) {}

    /// Native work and run-time values are left undone: the walk logs what would be done.
    async fn own_work<'a, T: Send + 'a>(
        &'a self,
        _work: impl std::future::Future<Output = T> + Send + 'a,
    ) -> Option<T> {
        None
    }
}
