//! The local executor: runs every command on this machine with `sh -c`.
//!
//! Used for `on: local` steps of every run, and for whole runs with `--local`, when runbook
//! itself runs on the only node (break-glass on a single control plane).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use super::{ExecError, Executor, Outcome, Target, timed_out_code, wrapped};
use crate::inventory::model::Node;

#[derive(Debug, Default)]
pub struct Local;

impl Local {
    pub async fn run(
        script: &str,
        env: &[(String, String)],
        timeout: Duration,
    ) -> Result<Outcome, ExecError> {
        let line = wrapped(script, env, timeout);
        let child = Command::new("sh")
            .arg("-c")
            .arg(&line)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ExecError(format!("cannot start sh on this machine: {e}")))?;
        // `timeout` inside the line ends the work; this bound only guards against a stuck pipe.
        let waited =
            tokio::time::timeout(timeout + Duration::from_secs(10), child.wait_with_output()).await;
        match waited {
            Err(_) => Ok(Outcome {
                code: None,
                timed_out: true,
                ..Outcome::default()
            }),
            Ok(Err(e)) => Err(ExecError(format!("waiting for sh on this machine: {e}"))),
            Ok(Ok(out)) => Ok(Outcome {
                code: out.status.code(),
                timed_out: timed_out_code(out.status.code()),
                stdout: out.stdout,
                stderr: out.stderr,
            }),
        }
    }
}

impl Executor for Local {
    async fn connect<'a>(&'a self, _nodes: &'a [&'a Node]) -> Vec<(String, ExecError)> {
        Vec::new()
    }

    async fn shell<'a>(
        &'a self,
        _target: Target<'a>,
        script: &'a str,
        env: &'a [(String, String)],
        timeout: Duration,
    ) -> Result<Outcome, ExecError> {
        Local::run(script, env, timeout).await
    }

    async fn upload<'a>(
        &'a self,
        _node: &'a Node,
        source: &'a Path,
        dest: &'a str,
    ) -> Result<(), ExecError> {
        // The same name the SSH executor writes beside the destination.
        let part = std::path::PathBuf::from(format!("{dest}.runbook-part"));
        let dest = Path::new(dest);
        let fail = |what: &str, e: std::io::Error| ExecError(format!("{what}: {e}"));
        let src = source.to_path_buf();
        let (part2, dest2) = (part.clone(), dest.to_path_buf());
        tokio::task::spawn_blocking(move || -> Result<(), ExecError> {
            use std::os::unix::fs::OpenOptionsExt;
            let mut from = std::fs::File::open(&src)
                .map_err(|e| fail(&format!("cannot open {}", src.display()), e))?;
            let mut to = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&part2)
                .map_err(|e| fail(&format!("cannot write {}", part2.display()), e))?;
            std::io::copy(&mut from, &mut to)
                .map_err(|e| fail(&format!("copying to {}", part2.display()), e))?;
            to.sync_all()
                .map_err(|e| fail(&format!("fsync {}", part2.display()), e))?;
            std::fs::rename(&part2, &dest2)
                .map_err(|e| fail(&format!("renaming to {}", dest2.display()), e))
        })
        .await
        .map_err(|e| ExecError(format!("copy task failed: {e}")))?
    }

    async fn tunnel_to<'a>(
        &'a self,
        _node: &'a Node,
        host: &'a str,
        port: u16,
    ) -> Result<std::net::SocketAddr, ExecError> {
        tokio::net::lookup_host((host, port))
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| ExecError(format!("cannot resolve {host}:{port}")))
    }

    async fn close(&self) {}
}
