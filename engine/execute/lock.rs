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
    /// The holder's machine (/etc/machine-id), its boot (the kernel's boot_id) and the
    /// process's start time (clock ticks after boot, /proc/PID/stat): with them a holder on
    /// this machine is known to be gone even when its pid was reused or a reboot ended it.
    /// Absent from locks written before they were recorded, and read by older versions as
    /// unknown fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<u64>,
}

impl Holder {
    /// The holder for this process.
    pub fn this_process(run_id: &str, cluster: &str) -> Holder {
        let (user, host) = crate::execute::rundir::who();
        let pid = std::process::id();
        Holder {
            run_id: run_id.to_string(),
            cluster: cluster.to_string(),
            user,
            host,
            pid,
            since: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            machine_id: machine_id(),
            boot_id: boot_id(),
            start_time: start_time(pid),
        }
    }

    /// Why the holder is provably no longer running, when it is: it ran on this machine and
    /// its process is gone (the pid is free, belongs to a process started at another time, or
    /// the machine rebooted since). A holder on another machine, or one still running, gives
    /// `None`: only its operator can tell.
    pub fn gone(&self) -> Option<String> {
        let this_machine = match (&self.machine_id, machine_id()) {
            (Some(theirs), Some(ours)) => *theirs == ours,
            // Written before machine ids were recorded (or none is readable): by host name.
            _ => self.host == crate::execute::rundir::who().1,
        };
        if !this_machine {
            return None;
        }
        let pid = self.pid;
        let why = if self
            .boot_id
            .as_ref()
            .zip(boot_id())
            .is_some_and(|(theirs, ours)| *theirs != ours)
        {
            " (the machine has rebooted since)"
        } else {
            match start_time(pid) {
                None => "",
                Some(t) if self.start_time.is_some_and(|s| s != t) => {
                    " (the pid now belongs to a process started later)"
                }
                Some(_) => return None,
            }
        };
        Some(format!(
            "held by pid {pid} on this host, which is no longer running{why}"
        ))
    }
}

fn machine_id() -> Option<String> {
    first_line("/etc/machine-id")
}

fn boot_id() -> Option<String> {
    first_line("/proc/sys/kernel/random/boot_id")
}

fn first_line(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The start time of process `pid` (field 22 of /proc/PID/stat), or `None` if there is no
/// such process. The command name (field 2) is in parentheses and may hold spaces and
/// parentheses itself, so fields are counted after the last `)`.
fn start_time(pid: u32) -> Option<u64> {
    parse_start_time(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn parse_start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// A lock as read from a node: who holds it, and why that holder is gone if it provably is.
pub fn describe_lock(text: &str) -> (String, Option<String>) {
    match serde_json::from_str::<Holder>(text.trim()) {
        Ok(h) => (h.to_string(), h.gone()),
        Err(_) => (format!("an unreadable lock: {}", text.trim()), None),
    }
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
                let (who, gone) = describe_lock(&String::from_utf8_lossy(&out.stdout));
                refusals.push(match gone {
                    Some(why) => format!("{} is locked by {who}: {why}", node.name),
                    None => format!("{} is locked by {who}", node.name),
                });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_is_gone_only_when_provably_so() {
        let me = Holder::this_process("r", "c");
        assert!(me.start_time.is_some());
        assert_eq!(me.gone(), None);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let was = |f: &dyn Fn(&mut Holder)| {
            let mut h = me.clone();
            f(&mut h);
            h.gone()
        };
        assert_eq!(
            was(&|h| h.pid = dead),
            Some(format!(
                "held by pid {dead} on this host, which is no longer running"
            ))
        );
        let reused = was(&|h| h.start_time = h.start_time.map(|t| t + 1)).unwrap();
        assert!(reused.ends_with("(the pid now belongs to a process started later)"));
        let rebooted = was(&|h| h.boot_id = Some("another-boot".into())).unwrap();
        assert!(rebooted.ends_with("(the machine has rebooted since)"));
        // Another machine, by its id or (for locks without one) by its name: cannot tell.
        assert_eq!(
            was(&|h| {
                h.pid = dead;
                h.machine_id = Some("another-machine".into());
            }),
            None
        );
        assert_eq!(
            was(&|h| {
                h.pid = dead;
                h.machine_id = None;
                h.host = "laptop".into();
            }),
            None
        );
        // A lock written before the new fields reads, and is judged by host name and pid.
        let old = r#"{"run_id":"x","cluster":"c","user":"u","host":"laptop","pid":1,"since":"s"}"#;
        let (who, gone) = describe_lock(old);
        assert_eq!(who, "run x by u@laptop (pid 1) since s");
        assert_eq!(gone, None);
    }

    #[test]
    fn start_time_is_read_after_the_command_name() {
        let stat = "42 (a) b (c) R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 777 19 20";
        assert_eq!(parse_start_time(stat), Some(777));
        assert_eq!(parse_start_time("42 (x"), None);
    }
}
