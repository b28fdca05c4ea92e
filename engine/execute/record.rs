//! The host-side record of a step's commands: they run detached from the connection that
//! started them, and leave their output and exit status in files the next run can read.
//!
//! Why: when runbook dies (kill -9, a laptop lid, a lost VPN) the SSH channel closes, and a
//! shell that then writes to it dies of SIGPIPE halfway through, e.g. between moving a
//! member's old data aside and moving the restored data in. Detached, the work finishes on
//! its own; on resume a step whose end the journal never saw is settled from this record:
//! exit 0 → succeeded, non-zero → failed, still running → wait for it, never started → run.
//!
//! Layout on each host: `/var/lib/runbook/runs/<run-id>/` (0700), and per shell group of a
//! step attempt `<step>.<attempt>.<group>.{launched,pid,out,err,rc}`. `rc` is written last,
//! by rename, so it exists only once the status is known.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::future::join_all;

use crate::executor::{Executor, Target};
use crate::inventory::model::Node;
use crate::shell::quote;

/// Where hosts keep the records of runs (beside runbook's node lock).
pub const NODE_ROOT: &str = "/var/lib/runbook/runs";

/// Exit status the launcher reports when the work ended without recording one (the host
/// restarted, or something killed the detached shell): the step failed, its effect unknown.
pub const LOST: i32 = 126;

/// The record directory of a run on one target.
#[derive(Debug, Clone)]
pub struct Place {
    dir: String,
}

impl Place {
    /// A run's record on a node.
    pub fn node(run_id: &str) -> Place {
        Place {
            dir: format!("{NODE_ROOT}/{run_id}"),
        }
    }

    /// A run's record for `on: local` steps: inside the run directory on this machine.
    pub fn local(run_dir: &std::path::Path) -> Place {
        Place {
            dir: run_dir.join("record").display().to_string(),
        }
    }

    pub fn dir(&self) -> &str {
        &self.dir
    }

    /// The file prefix of one shell group of one attempt of a step.
    pub fn prefix(&self, step: &str, attempt: u32, group: usize) -> String {
        // Step ids are `name@node`; anything unusual in a file name becomes `_`.
        let safe: String = step
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("{}/{safe}.{attempt}.{group}", self.dir)
    }
}

/// The script that runs `script` detached under a record at `prefix`, or re-attaches to it.
///
/// First time: marks the group launched (with `true`, not `:`: a failed redirection on a
/// special builtin ends the shell before it can say why), starts it in a session of its own
/// (`setsid`, so a hangup or a dying connection does not reach it) with its output in files,
/// and waits.
/// Again (a resume): a finished group reports its recorded output and status without
/// running again; a running one is waited for. Either way the launcher ends with the work's
/// own exit status and output, so the caller cannot tell a re-attached group from a new one.
pub fn launcher(prefix: &str, script: &str, env: &[(String, String)], timeout: Duration) -> String {
    let r = quote(prefix);
    let mut job = format!("echo $$ > {r}.pid; ");
    for (k, v) in env {
        job.push_str(&format!("export {k}={}; ", quote(v)));
    }
    let secs = timeout.as_secs().max(1);
    // `timeout` stops the work when the step's time is up even if runbook has gone away.
    job.push_str(&format!(
        "timeout -k 5 {secs} sh -c {} > {r}.out 2> {r}.err < /dev/null; \
         echo $? > {r}.rc.part && mv -f {r}.rc.part {r}.rc",
        quote(script)
    ));
    format!(
        "r={r}\n\
if [ ! -e \"$r.launched\" ]; then\n\
  true > \"$r.launched\" || {{ echo \"runbook: cannot write the run's record $r.launched on this host (was /var/lib/runbook/runs removed?); nothing was run\" >&2; exit {LOST}; }}\n\
  setsid -f -w sh -c {job} < /dev/null > /dev/null 2>&1\n\
fi\n\
n=0\n\
while [ ! -e \"$r.rc\" ]; do\n\
  if [ -e \"$r.pid\" ]; then\n\
    if ! kill -0 \"$(cat \"$r.pid\")\" 2>/dev/null && [ ! -e \"$r.rc\" ]; then\n\
      echo \"runbook: the command ended without recording its status (killed, or the host restarted); record: $r.*\" >&2\n\
      exit {LOST}\n\
    fi\n\
  elif [ \"$n\" -ge 50 ]; then\n\
    echo \"runbook: the command was launched but never started; record: $r.*\" >&2\n\
    exit {LOST}\n\
  fi\n\
  n=$((n+1)); sleep 0.2\n\
done\n\
cat \"$r.out\" 2>/dev/null; cat \"$r.err\" >&2 2>/dev/null\n\
exit \"$(cat \"$r.rc\")\"\n",
        job = quote(&job)
    )
}

/// What `prepare` found on the hosts.
#[derive(Debug, Default)]
pub struct Found {
    /// Nodes that had no record of this run before (all of them, for a new run).
    pub without_record: BTreeSet<String>,
}

/// Makes sure every node has this run's record directory and the tools the launcher needs;
/// reports which nodes had none yet. With `create` false, only looks (a resume decides
/// what a missing record means before making a new one).
pub async fn prepare<E: Executor>(
    exec: &E,
    nodes: &[&Node],
    run_id: &str,
    create: bool,
) -> Result<Found, Vec<String>> {
    let dir = quote(&Place::node(run_id).dir);
    let script = format!(
        "command -v setsid >/dev/null || {{ echo 'setsid (util-linux) is missing: runbook runs step commands detached with it' >&2; exit 1; }}\n\
command -v timeout >/dev/null || {{ echo 'timeout (coreutils) is missing: runbook bounds step commands with it' >&2; exit 1; }}\n\
if [ -d {dir} ]; then echo kept; else echo new; fi\n{}",
        if create {
            format!("mkdir -p -m 0700 {dir}\n")
        } else {
            String::new()
        }
    );
    let results = join_all(nodes.iter().map(|n| {
        let script = &script;
        async move {
            let out = exec
                .shell(Target::Node(n), script, &[], Duration::from_secs(30))
                .await;
            (n.name.clone(), out)
        }
    }))
    .await;
    let mut found = Found::default();
    let mut errors = Vec::new();
    for (name, out) in results {
        match out {
            Err(e) => errors.push(format!("{name}: {e}")),
            Ok(o) if !o.success() => errors.push(format!(
                "{name}: cannot prepare the run's record {}: {}",
                Place::node(run_id).dir,
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Ok(o) => {
                if String::from_utf8_lossy(&o.stdout).trim() != "kept" {
                    found.without_record.insert(name);
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(found)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn sh(script: &str) -> std::process::Output {
        Command::new("sh").arg("-c").arg(script).output().unwrap()
    }

    #[test]
    fn a_finished_group_reports_its_record_and_does_not_run_again() {
        let d = tempfile::tempdir().unwrap();
        let prefix = d.path().join("step@n.1.0").display().to_string();
        let count = d.path().join("count");
        let script = format!(
            "echo ran >> {}; echo out; echo err >&2; exit 3",
            count.display()
        );
        let l = launcher(&prefix, &script, &[], Duration::from_secs(10));
        for _ in 0..2 {
            let out = sh(&l);
            assert_eq!(out.status.code(), Some(3));
            assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
            assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
        }
        assert_eq!(std::fs::read_to_string(count).unwrap(), "ran\n");
    }

    #[test]
    fn the_work_survives_the_launcher_and_is_waited_for_again() {
        let d = tempfile::tempdir().unwrap();
        let prefix = d.path().join("s.1.0").display().to_string();
        let l = launcher(
            &prefix,
            "sleep 1; echo done",
            &[("X".into(), "it's".into())],
            Duration::from_secs(10),
        );
        // The first launcher is killed at once, as a dying SSH session would be.
        let mut first = Command::new("sh").arg("-c").arg(&l).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        first.kill().unwrap();
        first.wait().unwrap();
        let again = sh(&l);
        assert_eq!(again.status.code(), Some(0));
        assert_eq!(String::from_utf8_lossy(&again.stdout), "done\n");
    }

    #[test]
    fn work_that_died_without_a_status_is_reported_lost() {
        let d = tempfile::tempdir().unwrap();
        let prefix = d.path().join("s.1.0").display().to_string();
        std::fs::write(format!("{prefix}.launched"), "").unwrap();
        // A pid that cannot be running: the record says started, and nothing finishes it.
        std::fs::write(format!("{prefix}.pid"), "999999999\n").unwrap();
        let out = sh(&launcher(&prefix, "true", &[], Duration::from_secs(5)));
        assert_eq!(out.status.code(), Some(LOST));
        assert!(String::from_utf8_lossy(&out.stderr).contains("without recording its status"));
    }

    #[test]
    fn a_missing_record_directory_is_said_and_nothing_runs() {
        let d = tempfile::tempdir().unwrap();
        let prefix = d.path().join("gone/s.1.0").display().to_string();
        let ran = d.path().join("ran");
        let out = sh(&launcher(
            &prefix,
            &format!("touch {}", ran.display()),
            &[],
            Duration::from_secs(5),
        ));
        assert_eq!(out.status.code(), Some(LOST));
        assert!(String::from_utf8_lossy(&out.stderr).contains("cannot write the run's record"));
        assert!(!ran.exists());
    }

    #[test]
    fn env_values_reach_the_work_quoted() {
        let d = tempfile::tempdir().unwrap();
        let prefix = d.path().join("s.1.0").display().to_string();
        let v = "a'b $(touch /tmp/x) \"c\"";
        let out = sh(&launcher(
            &prefix,
            "printf %s \"$V\"",
            &[("V".into(), v.into())],
            Duration::from_secs(5),
        ));
        assert_eq!(String::from_utf8_lossy(&out.stdout), v);
    }
}
