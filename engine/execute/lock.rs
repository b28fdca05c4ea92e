//! One run per cluster: a lock on this machine (flock) and a lock file on every node, so two
//! operators on two laptops cannot run plans against the same cluster at once.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;
use std::time::Duration;

use futures_util::future::join_all;
use serde::{Deserialize, Serialize};

use crate::executor::{Executor, Target};
use crate::inventory::model::Node;
use crate::shell::quote;

/// The lock file on each node.
pub const NODE_LOCK: &str = "/var/lib/runbook/runbook.lock";

/// Who holds a lock: written into both kinds of lock, shown to whoever is refused.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Holder {
    pub run_id: String,
    pub cluster: String,
    pub user: String,
    pub host: String,
    pub pid: u32,
    pub since: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "run {} by {}@{} (pid {}) since {}",
            self.run_id, self.user, self.host, self.pid, self.since
        )
    }
}

/// Held for the whole run; released when dropped (the kernel releases it if the process dies).
pub struct LocalLock {
    _file: File,
}

fn local_lock_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("RUNBOOK_LOCK_DIR") {
        return PathBuf::from(d);
    }
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    state.join("runbook").join("locks")
}

impl LocalLock {
    pub fn acquire(holder: &Holder) -> Result<LocalLock, String> {
        let dir = local_lock_dir();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let path = dir.join(format!("{}.lock", holder.cluster));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        if file.try_lock().is_err() {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let who = serde_json::from_str::<Holder>(&text)
                .map(|h| h.to_string())
                .unwrap_or_else(|_| "another runbook process".into());
            return Err(format!(
                "cluster {} is locked on this machine by {who} ({})",
                holder.cluster,
                path.display()
            ));
        }
        let body = serde_json::to_string(holder).unwrap_or_default();
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| file.write_all(body.as_bytes()))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(LocalLock { _file: file })
    }
}

/// Takes the lock file on every node. A lock left by the same run (a crashed run being
/// resumed) is taken over; any other holder refuses the run and releases what was taken.
pub async fn acquire_nodes<E: Executor>(
    exec: &E,
    nodes: &[&Node],
    holder: &Holder,
) -> Result<(), String> {
    let body = serde_json::to_string(holder).unwrap_or_default();
    let f = quote(NODE_LOCK);
    let script = format!(
        "mkdir -p -m 0700 \"$(dirname {f})\" || exit 1; \
         if ( set -C; printf '%s\\n' {b} > {f} ) 2>/dev/null; then exit 0; fi; \
         if grep -qF {mine} {f}; then printf '%s\\n' {b} > {f}; exit 0; fi; cat {f}; exit 3",
        b = quote(&body),
        mine = quote(&format!("\"run_id\":\"{}\"", holder.run_id)),
    );
    let results = join_all(nodes.iter().map(|node| {
        let script = &script;
        async move {
            let r = exec
                .shell(Target::Node(node), script, &[], Duration::from_secs(30))
                .await;
            (*node, r)
        }
    }))
    .await;
    let mut taken = Vec::new();
    let mut refusals = Vec::new();
    for (node, result) in results {
        match result {
            Ok(out) if out.success() => taken.push(node),
            Ok(out) if out.code == Some(3) => {
                let text = String::from_utf8_lossy(&out.stdout);
                let who = serde_json::from_str::<Holder>(text.trim())
                    .map(|h| h.to_string())
                    .unwrap_or_else(|_| format!("an unreadable lock: {}", text.trim()));
                refusals.push(format!("{} is locked by {who}", node.name));
            }
            Ok(out) => refusals.push(format!(
                "cannot take the lock {NODE_LOCK} on {}: {}",
                node.name,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => refusals.push(format!("cannot take the lock on {}: {e}", node.name)),
        }
    }
    if refusals.is_empty() {
        return Ok(());
    }
    release_nodes(exec, &taken, &holder.run_id).await;
    Err(refusals.join("\n"))
}

/// Removes this run's lock file from the nodes; a lock of another run is left alone.
pub async fn release_nodes<E: Executor>(exec: &E, nodes: &[&Node], run_id: &str) {
    let f = quote(NODE_LOCK);
    let script = format!(
        "if grep -qF {mine} {f} 2>/dev/null; then rm -f {f}; fi",
        mine = quote(&format!("\"run_id\":\"{run_id}\""))
    );
    join_all(
        nodes
            .iter()
            .map(|node| exec.shell(Target::Node(node), &script, &[], Duration::from_secs(30))),
    )
    .await;
}
