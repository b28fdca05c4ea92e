//! The walk, journal, resume, gates and locks, run for real with the local executor
//! (`apply --local`): real shells, real files, a real `kill -9` of the engine.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Run, assert_no_panic, assert_valid_junit};

/// A scratch directory with a plan, an inventory of one local node and its own lock dir.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new(plan: &str) -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("plan.yaml"), plan).unwrap();
        // The cluster name is unique per scratch so parallel tests never share a local lock.
        let cluster = format!(
            "t{}",
            dir.path()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .to_lowercase()
                .replace(['.', '_'], "")
        );
        std::fs::write(
            dir.path().join("inventory.yaml"),
            format!(
                "cluster: {cluster}\netcd: {{ version: \"3.5.16\" }}\nnodes:\n  - {{ name: n1, address: 127.0.0.1, roles: [etcd] }}\n"
            ),
        )
        .unwrap();
        Scratch { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_runbook"));
        c.args(args)
            .current_dir(self.dir.path())
            .env("NO_COLOR", "1")
            .env("RUNBOOK_LOCK_DIR", self.path("locks"))
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Run {
        let out = self.cmd(args).output().unwrap();
        let r = Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        assert_no_panic(&r);
        r
    }

    /// `apply plan.yaml --local` into `run_dir`, started in the background.
    fn spawn_apply(&self, run_dir: &str, extra: &[&str]) -> std::process::Child {
        let mut args = vec![
            "apply",
            "plan.yaml",
            "-i",
            "inventory.yaml",
            "--local",
            "--run-dir",
            run_dir,
        ];
        args.extend_from_slice(extra);
        self.cmd(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn apply(&self, extra: &[&str]) -> Run {
        let mut args = vec![
            "apply",
            "plan.yaml",
            "-i",
            "inventory.yaml",
            "--local",
            "--run-dir",
            "run",
        ];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    fn journal(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.path("run/journal.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn count(&self, event: &str, id: &str) -> usize {
        self.journal()
            .iter()
            .filter(|e| e["event"] == event && e["id"] == id)
            .count()
    }
}

/// `apply --local` treats this machine as the node, so its lock file is this machine's.
/// These tests run one at a time (nextest group `local-runs`) for that reason.
const NODE_LOCK: &str = "/var/lib/runbook/runbook.lock";

fn mark(dir: &Path, name: &str) -> String {
    format!("echo x >> {}", dir.join(name).display())
}

#[test]
fn a_failure_skips_its_dependents_and_prints_rollback_notes_newest_first() {
    let s = Scratch::new("");
    let d = s.dir.path();
    std::fs::write(
        s.path("plan.yaml"),
        format!(
            r#"name: fail
steps:
  - id: park
    on: n1
    run: '{park}'
    destructive: true
    rollback: unpark on n1
  - id: wipe
    on: n1
    run: '{wipe}'
    destructive: true
    rollback: restore the wiped data on n1
    needs: [park]
  - id: broken
    on: n1
    run: 'echo the disk is full >&2; exit 7'
    needs: [wipe]
  - id: after
    on: n1
    run: '{after}'
    needs: [broken]
  - id: unrelated
    on: n1
    run: 'true'
"#,
            park = mark(d, "park"),
            wipe = mark(d, "wipe"),
            after = mark(d, "after"),
        ),
    )
    .unwrap();
    let r = s.apply(&["--yes"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("FAILED   broken"), "{}", r.stderr);
    assert!(
        r.stderr.contains("exit 7: the disk is full"),
        "{}",
        r.stderr
    );
    assert!(!s.path("after").exists(), "a dependent of the failure ran");
    assert!(
        r.stdout.contains("skipped (upstream failed: broken)"),
        "{}",
        r.stdout
    );
    // Newest first: wipe before park.
    let notes = std::fs::read_to_string(s.path("run/rollback.txt")).unwrap();
    let (w, p) = (
        notes.find("wipe (on n1)").unwrap(),
        notes.find("park (on n1)").unwrap(),
    );
    assert!(w < p, "{notes}");
    assert!(r.stderr.contains("restore the wiped data on n1"));
    // The report says it failed, where, and why; JUnit marks the failure and the skips.
    let report = s.run(&["report", "run", "-o", "junit"]);
    assert_eq!(report.code, 1);
    assert_valid_junit(&report.stdout);
    assert!(
        report
            .stdout
            .contains("<testcase name=\"broken\" classname=\"fail.broken\" time="),
        "{}",
        report.stdout
    );
    // Each step's log is its system-out; the whole-run counts carry `errors`, not `skipped`.
    assert!(
        report.stdout.contains(
            "the disk is full\nrunbook: command 1 of 1 failed (exit 7)\n-- exit 7\n</system-out>"
        ),
        "{}",
        report.stdout
    );
    let suites = report.stdout.lines().nth(1).unwrap();
    assert!(
        suites.starts_with("<testsuites name=\"runbook\"")
            && suites.contains(" errors=\"0\"")
            && !suites.contains("skipped"),
        "{suites}"
    );
    assert!(
        report
            .stdout
            .contains("<failure message=\"exit 7: the disk is full\">$ echo the disk is full"),
        "{}",
        report.stdout
    );
    assert!(
        report
            .stdout
            .contains("<skipped message=\"skipped (upstream failed: broken)\"/>"),
        "{}",
        report.stdout
    );
    let md = s.run(&["report", "run"]);
    assert!(md.stdout.starts_with("# fail on "), "{}", md.stdout);
    assert!(md.stdout.contains("FAILED"));
    assert!(
        md.stdout
            .contains("## Failure\n\n`broken` failed: exit 7: the disk is full\n"),
        "{}",
        md.stdout
    );
    // wipe is destructive: approved with --yes by whoever ran the test.
    let (user, host) = runbook::execute::rundir::who();
    assert!(
        md.stdout.contains(&format!(
            "| Approved by | {user}@{host} (--yes on the command line): "
        )),
        "{}",
        md.stdout
    );
    // The step log keeps the command and what it printed.
    let log = std::fs::read_to_string(s.path("run/logs/broken.log")).unwrap();
    assert!(
        log.contains("the disk is full") && log.contains("-- exit 7"),
        "{log}"
    );
    // Run files are private.
    use std::os::unix::fs::PermissionsExt;
    for f in [
        "run/journal.jsonl",
        "run/run.json",
        "run/plan.json",
        "run/logs/broken.log",
    ] {
        let mode = std::fs::metadata(s.path(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
}

#[test]
fn destructive_steps_need_approval_off_a_terminal() {
    let s = Scratch::new(
        "name: gated\nsteps:\n  - id: wipe\n    on: n1\n    run: 'touch wiped'\n    destructive: true\n    rollback: none\n",
    );
    let r = s.apply(&[]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("refusing to run 1 destructive steps without approval"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("--approve sha256:"), "{}", r.stderr);
    assert!(!s.path("wiped").exists());
    // A wrong fingerprint is refused, the right one runs.
    let r = s.apply(&["--approve", "sha256:0000"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("the approval is for a different plan"),
        "{}",
        r.stderr
    );
    let fp = r
        .stderr
        .split("compiles to ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let r = s.apply(&["--approve", &fp]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(s.path("wiped").exists());
    let approved: Vec<_> = s
        .journal()
        .into_iter()
        .filter(|e| e["event"] == "approved")
        .collect();
    assert_eq!(approved.len(), 1);
    assert_eq!(approved[0]["by"], "--approve");
}

/// Waits (at most 30 s) until a running engine has journaled `needle`.
fn wait_for_journal(journal: &Path, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(journal)
        .unwrap_or_default()
        .contains(needle)
    {
        assert!(Instant::now() < deadline, "never journaled: {needle}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Starts `apply` in the background and kills it with SIGKILL once `id` has started and, when
/// given, once its command has left `marker` behind (so the kill lands mid-command).
fn kill_when_started(s: &Scratch, id: &str, marker: Option<&str>) {
    let mut child = s.spawn_apply("run", &["--yes"]);
    wait_for_journal(
        &s.path("run/journal.jsonl"),
        &format!("\"event\":\"step_started\",\"id\":\"{id}\""),
    );
    if let Some(m) = marker {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !s.path(m).exists() {
            assert!(Instant::now() < deadline, "{id} never wrote {m}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A plan whose destructive middle step outlives a killed engine: it marks `wipe`, then
/// works for two more seconds.
fn crash_plan(s: &Scratch) {
    let d = s.dir.path();
    std::fs::write(
        s.path("plan.yaml"),
        format!(
            r#"name: crash
steps:
  - id: first
    on: n1
    run: '{first}'
  - id: slow-wipe
    on: n1
    run: '{wipe}; sleep 2; echo wiped'
    destructive: true
    rollback: restore from the copy
    needs: [first]
  - id: last
    on: n1
    run: '{last}'
    needs: [slow-wipe]
"#,
            first = mark(d, "first"),
            wipe = mark(d, "wipe"),
            last = mark(d, "last"),
        ),
    )
    .unwrap();
}

fn lines(p: &Path) -> usize {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .count()
}

/// The run's record on the (local) node, where the killed step's work left its status.
fn node_record(s: &Scratch) -> PathBuf {
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(s.path("run/run.json")).unwrap()).unwrap();
    Path::new("/var/lib/runbook/runs").join(info["run_id"].as_str().unwrap())
}

#[test]
fn resume_after_kill_settles_the_unknown_step_from_the_hosts_record() {
    let s = Scratch::new("");
    crash_plan(&s);
    kill_when_started(&s, "slow-wipe", Some("wipe"));
    let st = s.run(&["status", "run"]);
    assert!(st.stdout.contains("State: incomplete"), "{}", st.stdout);
    assert!(
        st.stdout.contains(
            "slow-wipe started and never finished; resume settles it from the host's record"
        ),
        "{}",
        st.stdout
    );

    // No decision asked for: the work finished on the host after the engine died (or is
    // still running, and is waited for); its recorded status settles the step.
    let r = s.run(&["resume", "run", "--yes"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("settle   slow-wipe from the record of attempt 1 on n1"),
        "{}",
        r.stderr
    );
    assert_eq!(lines(&s.path("wipe")), 1, "the destructive step ran twice");
    assert_eq!(lines(&s.path("first")), 1, "a succeeded step ran again");
    assert_eq!(lines(&s.path("last")), 1);
    let ok = s
        .journal()
        .into_iter()
        .filter(|e| e["event"] == "step_finished" && e["id"] == "slow-wipe")
        .collect::<Vec<_>>();
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0]["status"], "succeeded");
    // What the work printed after the engine died reached the step's log.
    let log = std::fs::read_to_string(s.path("run/logs/slow-wipe.log")).unwrap();
    assert!(log.contains("wiped"), "{log}");
    let st = s.run(&["status", "run"]);
    assert!(st.stdout.contains("State: succeeded"), "{}", st.stdout);
}

#[test]
fn without_the_hosts_record_an_unknown_destructive_step_needs_the_operator() {
    let s = Scratch::new("");
    crash_plan(&s);
    kill_when_started(&s, "slow-wipe", Some("wipe"));
    // The node was rebuilt: its record of the run is gone.
    std::thread::sleep(Duration::from_millis(2500));
    std::fs::remove_dir_all(node_record(&s)).unwrap();

    let before = s.journal().len();
    let r = s.run(&["resume", "run", "--yes"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("slow-wipe  [run]  DESTRUCTIVE: n1 has no /var/lib/runbook/runs/"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("--retry STEP@NODE") && r.stderr.contains("--skip STEP@NODE"));
    assert!(
        s.journal()
            .iter()
            .skip(before)
            .all(|e| e["event"] != "step_started"),
        "a refused resume started steps"
    );
    let st = s.run(&["status", "run"]);
    assert!(
        st.stdout.contains("slow-wipe  n1    UNKNOWN"),
        "the refusal settled the step: {}",
        st.stdout
    );

    // The operator checked the host: the wipe is done. Skip it; the rest runs once.
    let r = s.run(&["resume", "run", "--yes", "--skip", "slow-wipe"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        s.count("step_started", "first"),
        1,
        "a succeeded step ran again"
    );
    assert_eq!(
        s.count("step_started", "slow-wipe"),
        1,
        "the destructive step ran twice"
    );
    assert_eq!(s.count("step_finished", "last"), 1);
    assert_eq!(lines(&s.path("first")), 1);
    assert_eq!(lines(&s.path("wipe")), 1);
    let st = s.run(&["status", "run"]);
    assert!(st.stdout.contains("State: succeeded"), "{}", st.stdout);
    assert!(st.stdout.contains("skipped (--skip)"), "{}", st.stdout);
}

#[test]
fn an_unknown_step_safe_to_rerun_runs_again_when_the_record_is_gone() {
    let s = Scratch::new("");
    let d = s.dir.path();
    std::fs::write(
        s.path("plan.yaml"),
        format!(
            "name: idem\nsteps:\n  - id: wait\n    on: n1\n    run: '{m}; test -e {flag} || sleep 30'\n    idempotent: true\n  - id: next\n    on: n1\n    run: 'true'\n    needs: [wait]\n",
            m = mark(d, "wait"),
            flag = s.path("flag").display()
        ),
    )
    .unwrap();
    kill_when_started(&s, "wait", Some("wait"));
    std::fs::remove_dir_all(node_record(&s)).unwrap();
    std::fs::write(s.path("flag"), "").unwrap();
    let r = s.run(&["resume", "run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("rerun    wait (no record of it on n1"),
        "{}",
        r.stderr
    );
    assert_eq!(s.count("step_started", "wait"), 2);
    assert_eq!(lines(&s.path("wait")), 2);
    assert_eq!(s.count("step_finished", "next"), 1);
}

#[test]
fn a_failed_step_shows_the_command_and_the_end_of_its_stderr() {
    let s = Scratch::new("");
    let d = s.dir.path();
    let inv = std::fs::read_to_string(s.path("inventory.yaml"))
        .unwrap()
        .replace(
            "etcd: { version: \"3.5.16\" }",
            &format!(
                "etcd: {{ version: \"3.5.16\", manifests_dir: {}/manifests }}",
                d.display()
            ),
        );
    std::fs::write(s.path("inventory.yaml"), inv).unwrap();
    std::fs::create_dir(s.path("manifests")).unwrap();
    std::fs::write(s.path("manifests/a.yaml"), "kind: Pod\n").unwrap();
    // The second manifest is missing: the action's own check fails with `exit 1`.
    std::fs::write(
        s.path("plan.yaml"),
        format!(
            "name: park\nsteps:\n  - id: park\n    on: n1\n    action: manifest.stop\n    with: {{ manifests: [a.yaml, missing.yaml], parking_dir: {}/parked }}\n    destructive: true\n    rollback: move them back\n",
            d.display()
        ),
    )
    .unwrap();
    let r = s.apply(&["--yes"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let line = r
        .stderr
        .lines()
        .skip_while(|l| !l.contains("FAILED   park"))
        .take(2)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        line.contains("command 3 of 3 (exit 1): ")
            && line.contains("/manifests/missing.yaml: no such manifest"),
        "{}",
        r.stderr
    );
    assert!(
        line.contains("$ if [ -e "),
        "the failing command is not shown: {line}"
    );
    // a.yaml was parked before the step failed: the run does not claim nothing changed.
    assert!(!r.stderr.contains("was not changed"), "{}", r.stderr);
    assert!(
        r.stderr.contains("did not finish cleanly")
            && r.stderr.contains("park (on n1, FAILED): move them back"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_changed_plan_is_not_resumed() {
    let s = Scratch::new("name: c\nsteps:\n  - id: a\n    on: n1\n    run: 'exit 1'\n");
    assert_eq!(s.apply(&[]).code, 1);
    std::fs::write(
        s.path("plan.yaml"),
        "name: c\nsteps:\n  - id: a\n    on: n1\n    run: 'exit 0'\n",
    )
    .unwrap();
    let r = s.run(&["resume", "run"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("the plan changed"), "{}", r.stderr);
}

#[test]
fn retries_back_off_and_timeouts_stop_the_step() {
    let s = Scratch::new("");
    std::fs::write(
        s.path("plan.yaml"),
        format!(
            "name: r\nsteps:\n  - id: flaky\n    on: n1\n    run: 'echo x >> {c}; test $(wc -l < {c}) -ge 2'\n    retries: 2\n  - id: stuck\n    on: n1\n    run: 'sleep 20'\n    timeout: 1s\n    needs: [flaky]\n",
            c = s.path("count").display()
        ),
    )
    .unwrap();
    let t = Instant::now();
    let r = s.apply(&[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "the timeout did not stop the step"
    );
    assert!(
        r.stderr.contains("retry    flaky: attempt 2 in 1.0s"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("ok       flaky"), "{}", r.stderr);
    assert!(r.stderr.contains("TIMEOUT  stuck"), "{}", r.stderr);
    assert!(r.stdout.contains("TIMED OUT"), "{}", r.stdout);
}

#[test]
fn one_run_per_cluster() {
    let s = Scratch::new("name: l\nsteps:\n  - id: hold\n    on: n1\n    run: 'sleep 3'\n");
    let mut first = s.spawn_apply("run1", &[]);
    wait_for_journal(&s.path("run1/journal.jsonl"), "step_started");
    let r = s.run(&[
        "apply",
        "plan.yaml",
        "-i",
        "inventory.yaml",
        "--local",
        "--run-dir",
        "run2",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("is locked on this machine by run "),
        "{}",
        r.stderr
    );
    assert!(!s.path("run2").exists(), "a refused run left its directory");
    assert!(
        r.stderr.contains(&format!("(pid {})", first.id())),
        "{}",
        r.stderr
    );
    assert!(first.wait().unwrap().success());
    // The node lock file names the holder too; once the first run is done it is gone.
    assert!(!Path::new(NODE_LOCK).exists());
    std::fs::write(
        NODE_LOCK,
        r#"{"run_id":"other-run","cluster":"x","user":"alice","host":"laptop","pid":1,"since":"2026-11-21T00:00:00Z"}"#,
    )
    .unwrap();
    let r = s.run(&[
        "apply",
        "plan.yaml",
        "-i",
        "inventory.yaml",
        "--local",
        "--run-dir",
        "run3",
    ]);
    std::fs::remove_file(NODE_LOCK).unwrap();
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("n1 is locked by run other-run by alice@laptop"),
        "{}",
        r.stderr
    );
}

#[test]
fn json_output_is_one_event_per_line_on_stdout() {
    let s = Scratch::new("name: j\nsteps:\n  - id: a\n    on: n1\n    run: 'echo data'\n");
    let r = s.apply(&["--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let events: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "run_started",
            "step_started",
            "step_finished",
            "run_finished"
        ]
    );
    assert_eq!(events[3]["status"], "succeeded");
}

#[test]
fn dry_run_reaches_no_host_and_writes_nothing() {
    let s = Scratch::new(
        "name: d\nsteps:\n  - id: a\n    on: n1\n    run: 'touch ran'\n    destructive: true\n    rollback: none\n",
    );
    let r = s.run(&["apply", "plan.yaml", "-i", "inventory.yaml", "--dry-run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("would run"), "{}", r.stdout);
    assert!(!s.path("ran").exists());
    assert!(!s.path(".runbook").exists());
}

/// Runs `runbook apply` on a pseudo-terminal (`script`), typing `answers`; returns what the
/// terminal showed. `timeout --foreground` keeps runbook in the terminal's foreground process
/// group: without it, timeout moves runbook into a group of its own whenever the shell that
/// `script` starts does not exec it (dash, or no $SHELL at all, as under CI), and runbook's
/// read of the answer stops it with SIGTTIN until the timeout.
fn on_a_terminal(s: &Scratch, extra: &str, answers: &[u8]) -> String {
    let line = format!(
        "timeout --foreground 120 {} apply plan.yaml -i inventory.yaml --local --run-dir run {extra}",
        env!("CARGO_BIN_EXE_runbook")
    );
    let mut child = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .current_dir(s.dir.path())
        // The same shell everywhere, the one CI's machines give `script` when $SHELL is unset.
        .env("SHELL", "/bin/sh")
        .env("NO_COLOR", "1")
        .env("RUNBOOK_LOCK_DIR", s.path("locks"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(answers).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Two destructive steps, one after the other.
fn two_destructive(s: &Scratch) {
    let d = s.dir.path();
    std::fs::write(
        s.path("plan.yaml"),
        format!(
            "name: tty\nsteps:\n  - id: one\n    on: n1\n    run: '{one}'\n    destructive: true\n    rollback: undo one\n  - id: two\n    on: n1\n    run: '{two}'\n    destructive: true\n    rollback: undo two\n    needs: [one]\n",
            one = mark(d, "one"),
            two = mark(d, "two"),
        ),
    )
    .unwrap();
}

#[test]
fn on_a_terminal_the_plan_is_approved_once_with_a_typed_yes() {
    let s = Scratch::new("");
    two_destructive(&s);
    let text = on_a_terminal(&s, "", b"yes\n");
    assert_eq!(
        text.matches("Run this plan? Only `yes` is accepted:")
            .count(),
        1,
        "asked once for the whole plan: {text}"
    );
    assert!(
        text.contains("2 of them change the cluster"),
        "the summary counts the destructive steps: {text}"
    );
    assert!(text.contains("  - one  [run]  DESTRUCTIVE"), "{text}");
    assert!(text.contains("rollback: undo two"), "{text}");
    assert!(text.contains("fingerprint sha256:"), "{text}");
    assert!(s.path("one").exists() && s.path("two").exists(), "{text}");
    // NO_COLOR: the summary carries no colour codes.
    assert!(
        !text.contains("\x1b[32m") && !text.contains("\x1b[31m"),
        "{text}"
    );
    let by: Vec<String> = s
        .journal()
        .iter()
        .filter(|e| e["event"] == "approved")
        .map(|e| e["by"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(by, ["tty", "tty"]);
}

#[test]
fn on_a_terminal_anything_but_yes_runs_nothing() {
    let s = Scratch::new("");
    two_destructive(&s);
    // A single keystroke is not an approval of a destructive plan.
    let text = on_a_terminal(&s, "", b"y\n");
    assert!(text.contains("declined: nothing was run"), "{text}");
    assert!(!s.path("one").exists() && !s.path("two").exists());
    assert!(
        !s.path("run").exists(),
        "a declined plan leaves no run behind"
    );
}

#[test]
fn with_step_each_stage_is_asked_in_order_and_no_stops_asking() {
    let s = Scratch::new("");
    let d = s.dir.path();
    std::fs::write(
        s.path("plan.yaml"),
        format!(
            "name: steps\nsteps:\n  - id: one\n    on: n1\n    run: '{one}'\n  - id: two\n    on: n1\n    run: '{two}'\n    needs: [one]\n  - id: three\n    on: n1\n    run: '{three}'\n    needs: [two]\n",
            one = mark(d, "one"),
            two = mark(d, "two"),
            three = mark(d, "three"),
        ),
    )
    .unwrap();
    // yes to stage 1, no to stage 2; a later yes is never read as an answer.
    let text = on_a_terminal(&s, "--step", b"y\nn\ny\n");
    let asked: Vec<&str> = text
        .lines()
        .filter_map(|l| l.find("Run stage ").map(|at| &l[at..at + 11]))
        .collect();
    assert_eq!(asked, ["Run stage 1", "Run stage 2"], "{text}");
    assert!(
        text.contains("  $ echo x >>"),
        "the prompt shows the commands: {text}"
    );
    assert!(s.path("one").exists());
    assert!(!s.path("two").exists(), "a declined stage ran: {text}");
    assert!(!s.path("three").exists(), "a stage after a no ran: {text}");
    assert_eq!(s.count("declined", "two"), 1);
}

#[test]
fn ctrl_c_lets_running_steps_finish_and_starts_nothing_new() {
    let s = Scratch::new("");
    let d = s.dir.path();
    std::fs::write(
        s.path("plan.yaml"),
        format!(
            "name: int\nsteps:\n  - id: slow\n    on: n1\n    run: 'sleep 1; {slow}'\n  - id: next\n    on: n1\n    run: '{next}'\n    needs: [slow]\n",
            slow = mark(d, "slow"),
            next = mark(d, "next"),
        ),
    )
    .unwrap();
    let child = s.spawn_apply("run", &[]);
    wait_for_journal(&s.path("run/journal.jsonl"), "step_started");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted: no new steps; waiting for 1 running"),
        "{stderr}"
    );
    assert!(
        s.path("slow").exists(),
        "the running step was not let finish"
    );
    assert!(!s.path("next").exists(), "a step started after Ctrl-C");
    assert_eq!(s.count("step_finished", "slow"), 1);
    let kinds: Vec<String> = s
        .journal()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect();
    assert!(kinds.contains(&"interrupted".to_string()));
    assert_eq!(s.journal().last().unwrap()["status"], "interrupted");
    // While interrupted, the report says so and why it did not pass; JUnit shows it in error.
    let md = s.run(&["report", "run"]);
    assert_eq!(md.code, 1, "{}", md.stderr);
    assert!(
        md.stdout
            .contains("| Failure | interrupted by the operator (Ctrl-C) before the end |"),
        "{}",
        md.stdout
    );
    let junit = s.run(&["report", "run", "--format", "junit"]);
    assert!(
        junit
            .stdout
            .contains("<testcase name=\"run\" classname=\"int.run\""),
        "{}",
        junit.stdout
    );
    assert_valid_junit(&junit.stdout);
    // The interrupted run resumes where it stopped.
    let r = s.run(&["resume", "run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(s.count("step_started", "slow"), 1);
    assert!(s.path("next").exists());
    // The report of the whole run: who ran it, the interruption, the resume, the versions.
    let md = s.run(&["report", "run"]);
    assert_eq!(md.code, 0, "{}", md.stderr);
    let (user, host) = runbook::execute::rundir::who();
    for want in [
        "# int on t".to_string(),
        format!("| Run by | {user}@{host} (started "),
        format!("); {user}@{host} (resumed "),
        "## Interruptions and resumes".into(),
        "interrupted (Ctrl-C) on ".into(),
        "while slow ran: no new step started".into(),
        format!(": resumed by {user}@{host}\n"),
        format!("| runbook version | {} |", env!("CARGO_PKG_VERSION")),
        "| etcd version (inventory) | 3.5.16 |".into(),
        "No destructive step started".into(),
    ] {
        assert!(md.stdout.contains(&want), "{want}\n{}", md.stdout);
    }
    let junit = s.run(&["report", "run", "--format", "junit"]);
    assert_eq!(junit.code, 0);
    assert!(!junit.stdout.contains("name=\"run\""), "{}", junit.stdout);
    assert_valid_junit(&junit.stdout);
}

#[test]
fn distribute_copies_the_file_and_checks_its_digest_on_the_node() {
    let s = Scratch::new("");
    let source = s.path("snapshot.db");
    std::fs::write(&source, vec![42u8; 300_000]).unwrap();
    std::fs::write(
        s.path("plan.yaml"),
        format!(
            "name: copy\nsteps:\n  - id: copy\n    on: n1\n    action: snapshot.distribute\n    with: {{ source: {src}, dest: {dest} }}\n",
            src = source.display(),
            dest = s.path("staging/copy.db").display()
        ),
    )
    .unwrap();
    let r = s.apply(&[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        std::fs::read(s.path("staging/copy.db")).unwrap(),
        std::fs::read(&source).unwrap()
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str| std::fs::metadata(s.path(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("staging/copy.db"), 0o600);
    assert_eq!(mode("staging"), 0o700);
    assert!(!s.path("staging/copy.db.runbook-part").exists());
    let log = std::fs::read_to_string(s.path("run/logs/copy.log")).unwrap();
    assert!(log.contains("# runbook: copy"), "{log}");
    assert!(
        log.contains("sha256sum"),
        "the digest is checked on the node: {log}"
    );
}

#[test]
fn a_saved_plan_runs_exactly_as_reviewed_or_not_at_all() {
    let s = Scratch::new("");
    std::fs::write(s.path("input.db"), "reviewed bytes").unwrap();
    std::fs::write(
        s.path("plan.yaml"),
        format!(
            "name: saved\nparams:\n  src: {{ required: true }}\nsteps:\n  - id: use\n    on: n1\n    run: 'cat {{{{ params.src }}}} > {out}'\n    destructive: true\n    rollback: none\n",
            out = s.path("out").display()
        ),
    )
    .unwrap();
    let src = format!("src={}", s.path("input.db").display());
    let r = s.run(&[
        "plan",
        "plan.yaml",
        "-i",
        "inventory.yaml",
        "--set",
        &src,
        "-o",
        "json",
        "--out",
        "saved.json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(s.path("saved.json")).unwrap()).unwrap();
    let fp = saved["fingerprint"].as_str().unwrap().to_string();
    assert_eq!(saved["saved_plan"]["files"][0]["param"], "src");

    let r = s.run(&["apply", "saved.json", "--local"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains(&format!("--approve {fp}")),
        "{}",
        r.stderr
    );
    let r = s.run(&[
        "apply",
        "saved.json",
        "-i",
        "inventory.yaml",
        "--approve",
        &fp,
        "--local",
    ]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("carries its own inventory"),
        "{}",
        r.stderr
    );
    let r = s.run(&[
        "apply",
        "saved.json",
        "--approve",
        "sha256:00",
        "--local",
        "--run-dir",
        "r0",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(!s.path("out").exists());

    let r = s.run(&[
        "apply",
        "saved.json",
        "--approve",
        &fp,
        "--local",
        "--run-dir",
        "r1",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(s.path("out")).unwrap(),
        "reviewed bytes"
    );

    // The snapshot-like input changed after the review: refused, nothing runs.
    std::fs::remove_file(s.path("out")).unwrap();
    std::fs::write(s.path("input.db"), "other bytes").unwrap();
    let r = s.run(&[
        "apply",
        "saved.json",
        "--approve",
        &fp,
        "--local",
        "--run-dir",
        "r2",
    ]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("its inputs changed") && r.stderr.contains("parameter `src`"),
        "{}",
        r.stderr
    );
    assert!(!s.path("out").exists());
    // So is a changed inventory.
    std::fs::write(s.path("input.db"), "reviewed bytes").unwrap();
    let inv = std::fs::read_to_string(s.path("inventory.yaml")).unwrap();
    std::fs::write(s.path("inventory.yaml"), format!("{inv}# edited\n")).unwrap();
    let r = s.run(&[
        "apply",
        "saved.json",
        "--approve",
        &fp,
        "--local",
        "--run-dir",
        "r3",
    ]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("inventory") && r.stderr.contains("changed"),
        "{}",
        r.stderr
    );
}

#[test]
fn what_a_verification_found_is_in_the_json_events_and_the_journal() {
    let s = Scratch::new("");
    let snap = common::root().join("tests/fixtures/snapshots/etcd-3.6.db");
    std::fs::write(
        s.path("plan.yaml"),
        format!(
            "name: verify\nsteps:\n  - id: verify\n    on: local\n    action: snapshot.verify\n    with: {{ path: {} }}\n",
            snap.display()
        ),
    )
    .unwrap();
    let r = s.apply(&["-o", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let said: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "step_output")
        .collect();
    assert_eq!(said.len(), 1, "{}", r.stdout);
    assert_eq!(said[0]["id"], "verify");
    let text = said[0]["text"].as_str().unwrap();
    assert!(
        text.contains("trailer ok, every bbolt page checked"),
        "{text}"
    );
    assert_eq!(s.count("step_output", "verify"), 1, "journalled too");
}

/// `{{ run.started }}` and `{{ run.id }}` are the run's own: reviewed as placeholders, so one
/// approved fingerprint runs again and again with new values; a resume keeps its run's.
#[test]
fn values_only_the_run_knows_keep_the_fingerprint_and_survive_a_resume() {
    let s = Scratch::new("");
    let d = s.dir.path();
    std::fs::write(
        s.path("plan.yaml"),
        format!(
            "name: stamped\nsteps:\n  - id: first\n    on: n1\n    run: 'echo {{{{ run.id }}}} {{{{ run.started }}}} >> {a}'\n    destructive: true\n    rollback: none\n  - id: second\n    on: n1\n    run: 'test -e {flag} && echo {{{{ run.id }}}} >> {b}'\n    needs: [first]\n",
            a = d.join("a").display(),
            b = d.join("b").display(),
            flag = d.join("flag").display(),
        ),
    )
    .unwrap();
    let plan = s.run(&["plan", "plan.yaml", "-i", "inventory.yaml", "-o", "json"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let v: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    let fingerprint = v["fingerprint"].as_str().unwrap().to_string();
    assert_eq!(v["run_values"][0]["value"], "{{run.started}}", "{v}");
    assert!(
        v["steps"][0]["commands"][0]
            .as_str()
            .unwrap()
            .contains("{{run.id}}"),
        "{v}"
    );
    // The first run stops at `second` (no flag yet); the approval holds all the same.
    let first = s.apply(&["--approve", &fingerprint]);
    assert_eq!(first.code, 1, "{}", first.stderr);
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(s.path("run/run.json")).unwrap()).unwrap();
    let run_id = info["run_id"].as_str().unwrap().to_string();
    assert_eq!(info["run_values"]["id"], run_id.as_str());
    assert_eq!(info["fingerprint"], fingerprint.as_str());
    let a = std::fs::read_to_string(d.join("a")).unwrap();
    let started = info["run_values"]["started"].as_str().unwrap();
    assert_eq!(a, format!("{run_id} {started}\n"));
    assert!(started.ends_with('Z') && started.len() == 16, "{started}");
    // Resumed later, `second` writes the id the run started with.
    std::fs::write(d.join("flag"), "").unwrap();
    let resumed = s.run(&["resume", "run", "--approve", &fingerprint]);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert_eq!(
        std::fs::read_to_string(d.join("b")).unwrap(),
        format!("{run_id}\n")
    );
    // Another run, same approval, its own values.
    let again = s.run(&[
        "apply",
        "plan.yaml",
        "-i",
        "inventory.yaml",
        "--local",
        "--run-dir",
        "run2",
        "--approve",
        &fingerprint,
    ]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let lines: Vec<String> = std::fs::read_to_string(d.join("a"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), 2);
    assert_ne!(lines[0], lines[1], "each run has its own id");
}

/// `--metrics-file`: the run's metrics in the textfile format, parsed as Prometheus parses
/// them; a failed run records its failure and keeps the last success of the one before.
#[test]
fn metrics_of_a_run_parse_and_a_failure_keeps_the_last_success() {
    let s = Scratch::new("");
    let d = s.dir.path();
    std::fs::write(
        s.path("plan.yaml"),
        format!(
            "name: job\nsteps:\n  - id: work\n    on: n1\n    run: 'test ! -e {fail}'\n",
            fail = d.join("fail").display()
        ),
    )
    .unwrap();
    let metrics = s.path("metrics/runbook.prom");
    std::fs::create_dir_all(metrics.parent().unwrap()).unwrap();
    let file = metrics.to_str().unwrap().to_string();
    let read = || {
        let text = std::fs::read_to_string(&metrics).unwrap();
        let parsed =
            prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
        let value = |name: &str| {
            let s = parsed
                .samples
                .iter()
                .find(|s| s.metric == name)
                .unwrap_or_else(|| panic!("no {name} in\n{text}"));
            assert_eq!(s.labels.get("plan"), Some("job"), "{text}");
            assert!(
                s.labels.get("cluster").is_some_and(|c| !c.is_empty()),
                "{text}"
            );
            match s.value {
                prometheus_parse::Value::Gauge(v) => v,
                ref other => panic!("{name} is not a gauge: {other:?}"),
            }
        };
        (
            value("runbook_last_run_success"),
            value("runbook_last_run_exit_status"),
            value("runbook_last_success_timestamp_seconds"),
            value("runbook_last_run_timestamp_seconds"),
        )
    };
    let ok = s.run(&[
        "apply",
        "plan.yaml",
        "-i",
        "inventory.yaml",
        "--local",
        "--run-dir",
        "run1",
        "--metrics-file",
        &file,
    ]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let (success, exit, last_success, last_run) = read();
    assert_eq!((success, exit), (1.0, 0.0));
    assert!((now - last_success).abs() < 60.0, "{last_success} vs {now}");
    assert_eq!(last_success, last_run);

    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(d.join("fail"), "").unwrap();
    let failed = s.run(&[
        "apply",
        "plan.yaml",
        "-i",
        "inventory.yaml",
        "--local",
        "--run-dir",
        "run2",
        "--metrics-file",
        &file,
    ]);
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    let (success2, exit2, last_success2, last_run2) = read();
    assert_eq!((success2, exit2), (0.0, 1.0));
    assert_eq!(last_success2, last_success, "the last success is kept");
    assert!(last_run2 > last_run);
    // Replaced atomically: no temporary file is left beside it.
    let left: Vec<_> = std::fs::read_dir(metrics.parent().unwrap())
        .unwrap()
        .collect();
    assert_eq!(left.len(), 1);
}

/// A plan that starts with read-only checks: on a terminal they run first, and the one
/// question for the whole plan shows what they found (here: the snapshot's figures, and what
/// a restore of it would roll back, said even though no cluster answers); every other step,
/// destructive or not, waits for the answer, without taking the slot a check needs (one
/// step at a time here). `no` stops there.
fn checked_plan(s: &Scratch) {
    let snap = common::root().join("tests/fixtures/kubernetes/k8s-1.34.db");
    std::fs::write(
        s.path("plan.yaml"),
        format!(
            "name: checked\nsteps:\n  - id: early\n    on: n1\n    run: '{early}'\n  - id: verify-snapshot\n    on: local\n    action: snapshot.verify\n    with: {{ path: '{snap}' }}\n  - id: impact\n    on: local\n    action: snapshot.impact\n    with: {{ snapshot: '{snap}' }}\n    needs: [verify-snapshot]\n  - id: one\n    on: n1\n    run: '{one}'\n    destructive: true\n    rollback: undo one\n    needs: [impact]\n",
            snap = snap.display(),
            one = mark(s.dir.path(), "one"),
            early = mark(s.dir.path(), "early"),
        ),
    )
    .unwrap();
}

#[test]
fn on_a_terminal_the_checks_run_first_and_the_question_shows_what_they_found() {
    let s = Scratch::new("");
    checked_plan(&s);
    let text = on_a_terminal(&s, "--parallel 1", b"yes\n");
    let found = text
        .find("What the checks found before anything changes:")
        .unwrap_or_else(|| panic!("{text}"));
    let question = text.find("Run this plan? Only `yes` is accepted:").unwrap();
    assert!(found < question, "{text}");
    let shown = &text[found..question];
    assert!(shown.contains("verify-snapshot:"), "{shown}");
    assert!(
        shown.contains("impact: the cluster does not answer") && shown.contains("keys at revision"),
        "{shown}"
    );
    assert!(s.path("one").exists() && s.path("early").exists(), "{text}");

    let declined = Scratch::new("");
    checked_plan(&declined);
    let text = on_a_terminal(&declined, "", b"no\n");
    assert!(text.contains("What the checks found"), "{text}");
    assert!(
        !declined.path("one").exists() && !declined.path("early").exists(),
        "nothing but the checks ran: {text}"
    );
}
