//! The CLI contract: `plan` output (text, json, diagrams) for each bundled plan and example,
//! `validate` output and exit codes, fingerprints. Snapshots are reviewed, not rubber-stamped.

mod common;

use common::{assert_no_panic, runbook};

const SNAP: &str = "snapshot=/backups/etcd-2026-11-20.db";

const COMBOS: &[(&str, &str, &str)] = &[
    (
        "ha3",
        "plans/etcd-restore-ha.yaml",
        "examples/kubeadm-ha-3.yaml",
    ),
    (
        "ha5",
        "plans/etcd-restore-ha.yaml",
        "examples/kubeadm-ha-5.yaml",
    ),
    (
        "single",
        "plans/etcd-restore-single.yaml",
        "examples/kubeadm-single.yaml",
    ),
];

#[test]
fn plan_text_and_json_for_each_bundled_plan() {
    for (name, plan, inv) in COMBOS {
        let text = runbook(&["plan", plan, "-i", inv, "--set", SNAP]);
        assert_eq!(text.code, 0, "{}", text.stderr);
        insta::assert_snapshot!(format!("plan_text_{name}"), text.stdout);
        let json = runbook(&["plan", plan, "-i", inv, "--set", SNAP, "-o", "json"]);
        assert_eq!(json.code, 0, "{}", json.stderr);
        let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
        insta::assert_json_snapshot!(format!("plan_json_{name}"), v);
    }
}

/// On Kubespray's layout (etcd a systemd unit, its flags in /etc/etcd.env) the same bundled
/// plans stop, start and reconfigure etcd through the unit, and their rollback notes say so.
#[test]
fn on_systemd_members_the_plans_drive_the_unit_and_its_environment_file() {
    let inv = "examples/kubespray-3.yaml";
    let ha = runbook(&[
        "plan",
        "plans/etcd-restore-ha.yaml",
        "-i",
        inv,
        "--set",
        SNAP,
    ]);
    assert_eq!(ha.code, 0, "{}", ha.stderr);
    for line in [
        "stop-etcd@node1  on node1 (10.0.1.11)  [etcd.stop]  [DESTRUCTIVE]",
        "$ systemctl stop etcd.service",
        "$ systemctl start --no-block etcd.service",
        "rollback: systemctl start etcd.service on node1: the old member starts again on its",
    ] {
        assert!(ha.stdout.contains(line), "{line}\n{}", ha.stdout);
    }
    assert!(!ha.stdout.contains("etcd.yaml"), "{}", ha.stdout);
    // Quorum recovery: --force-new-cluster for one start, as ETCD_FORCE_NEW_CLUSTER.
    let qr = runbook(&[
        "plan",
        "plans/etcd-quorum-recovery.yaml",
        "-i",
        inv,
        "--set",
        "survivor=node1",
    ]);
    assert_eq!(qr.code, 0, "{}", qr.stderr);
    for line in [
        "force-flag  on node1 (10.0.1.11)  [etcd.flags]  [DESTRUCTIVE]",
        "if systemctl is-active --quiet etcd.service; then echo etcd.service is running: stop it with etcd.stop first >&2; exit 1; fi",
        "-v s=ETCD_FORCE_NEW_CLUSTER=true",
        "-v r=ETCD_FORCE_NEW_CLUSTER",
        "rollback: Remove --force-new-cluster from /etc/etcd.env (ETCD_FORCE_NEW_CLUSTER) on node1,",
    ] {
        assert!(qr.stdout.contains(line), "{line}\n{}", qr.stdout);
    }
    // Member replacement: the join flags go into the environment file.
    let mr = runbook(&[
        "plan",
        "plans/etcd-member-replace.yaml",
        "-i",
        inv,
        "--set",
        "member=node2",
    ]);
    assert_eq!(mr.code, 0, "{}", mr.stderr);
    assert!(
        mr.stdout.contains("then set ETCD_INITIAL_CLUSTER=<the members etcd lists after the add> and ETCD_INITIAL_CLUSTER_STATE=existing in /etc/etcd.env"),
        "{}",
        mr.stdout
    );
}

/// A static pod's manifest move of etcd.yaml, aimed at a systemd member, is refused where it
/// is written; a rolling change, which edits manifests, too.
#[test]
fn manifest_moves_of_etcd_on_a_systemd_member_are_refused_with_the_action_to_use() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("plan.yaml"),
        "name: p\nsteps:\n  - id: stop\n    on: node1\n    action: manifest.stop\n    with: { manifests: [etcd.yaml] }\n    destructive: true\n    rollback: start it\n",
    )
    .unwrap();
    let inv = common::root().join("examples/kubespray-3.yaml");
    let r = runbook(&[
        "validate",
        dir.path().join("plan.yaml").to_str().unwrap(),
        "-i",
        inv.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("etcd on node1 runs as the systemd unit etcd.service, not from etcd.yaml"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(
            "help: stop etcd with `etcd.stop`, which parks a static pod's manifest or stops a unit"
        ),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("plan.yaml:6:"), "{}", r.stderr);
    let roll = runbook(&[
        "validate",
        "plans/etcd-upgrade.yaml",
        "-i",
        inv.to_str().unwrap(),
        "--set",
        "version=3.6.16",
    ]);
    assert_eq!(roll.code, 1, "{}", roll.stderr);
    assert!(
        roll.stderr.contains(
            "etcd.roll changes static pod members; node1 runs etcd as the systemd unit etcd.service"
        ),
        "{}",
        roll.stderr
    );
}

/// The membership and drill plans as an operator reviews them before a change.
#[test]
fn plan_text_for_member_replace_quorum_recovery_and_drill() {
    for (name, plan, set) in [
        (
            "member_replace",
            "plans/etcd-member-replace.yaml",
            "member=cp2",
        ),
        (
            "quorum_recovery",
            "plans/etcd-quorum-recovery.yaml",
            "survivor=cp1",
        ),
        ("restore_drill", "plans/etcd-restore-drill.yaml", SNAP),
    ] {
        let text = runbook(&[
            "plan",
            plan,
            "-i",
            "examples/kubeadm-ha-3.yaml",
            "--set",
            set,
        ]);
        assert_eq!(text.code, 0, "{}", text.stderr);
        insta::assert_snapshot!(format!("plan_text_{name}"), text.stdout);
    }
}

#[test]
fn json_steps_are_in_a_valid_execution_order() {
    let r = runbook(&[
        "plan",
        COMBOS[0].1,
        "-i",
        COMBOS[0].2,
        "--set",
        SNAP,
        "-o",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let steps = v["steps"].as_array().unwrap();
    let mut seen = std::collections::HashSet::new();
    for s in steps {
        for need in s["needs"].as_array().unwrap() {
            assert!(
                seen.contains(need.as_str().unwrap()),
                "{} runs before its need {need}",
                s["id"]
            );
        }
        seen.insert(s["id"].as_str().unwrap().to_string());
        for key in [
            "id",
            "step",
            "node",
            "needs",
            "destructive",
            "action",
            "commands",
            "rollback",
        ] {
            assert!(s.get(key).is_some(), "step lacks `{key}`");
        }
    }
    assert!(v["fingerprint"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(v["plan"], "etcd-restore-ha");
    // Every restore carries the same token and the full member list.
    let restores: Vec<&serde_json::Value> = steps
        .iter()
        .filter(|s| s["action"] == "etcd.restore")
        .collect();
    assert_eq!(restores.len(), 3);
    for r in &restores {
        let cmd = r["commands"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            cmd.contains("--initial-cluster-token=prod-eu1-restored"),
            "{cmd}"
        );
        assert!(cmd.contains("--initial-cluster=cp1=https://10.0.0.11:2380,cp2=https://10.0.0.12:2380,cp3=https://10.0.0.13:2380"));
        assert!(cmd.contains(&format!("--name={}", r["node"].as_str().unwrap())));
        assert!(r["rollback"].is_string());
    }
}

#[test]
fn fingerprint_is_stable_and_covers_every_command() {
    let fp = |set: &str| {
        let r = runbook(&[
            "plan",
            COMBOS[0].1,
            "-i",
            COMBOS[0].2,
            "--set",
            set,
            "-o",
            "json",
        ]);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        v["fingerprint"].as_str().unwrap().to_string()
    };
    assert_eq!(fp(SNAP), fp(SNAP));
    assert_ne!(fp(SNAP), fp("snapshot=/backups/etcd-2026-11-21.db"));
    // The text form shows the same fingerprint as JSON.
    let text = runbook(&["plan", COMBOS[0].1, "-i", COMBOS[0].2, "--set", SNAP]);
    assert!(text.stdout.contains(&fp(SNAP)));
}

#[test]
fn diagrams() {
    let (_, plan, inv) = COMBOS[2];
    for format in ["mermaid", "dot"] {
        let r = runbook(&["plan", plan, "-i", inv, "--set", SNAP, "-o", format]);
        assert_eq!(r.code, 0);
        insta::assert_snapshot!(format!("plan_{format}_single"), r.stdout);
    }
}

#[test]
fn plan_out_writes_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("restore.plan.json");
    let r = runbook(&[
        "plan",
        COMBOS[0].1,
        "-i",
        COMBOS[0].2,
        "--set",
        SNAP,
        "-o",
        "json",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.is_empty());
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert!(r.stderr.contains(v["fingerprint"].as_str().unwrap()));
}

#[test]
fn validate_exit_codes_and_json() {
    let ok = runbook(&[
        "validate",
        COMBOS[0].1,
        "-i",
        COMBOS[0].2,
        "--set",
        SNAP,
        "-o",
        "json",
    ]);
    assert_eq!(ok.code, 0);
    let v: serde_json::Value = serde_json::from_str(&ok.stdout).unwrap();
    assert_eq!(v, serde_json::json!({ "valid": true, "diagnostics": [] }));

    // Missing required parameter: invalid (1), named in a located diagnostic.
    let missing = runbook(&["validate", COMBOS[0].1, "-i", COMBOS[0].2, "-o", "json"]);
    assert_eq!(missing.code, 1);
    let v: serde_json::Value = serde_json::from_str(&missing.stdout).unwrap();
    assert_eq!(v["valid"], false);
    let d = &v["diagnostics"][0];
    assert_eq!(d["code"], "missing-param");
    assert_eq!(d["severity"], "error");
    assert_eq!(d["file"], "plans/etcd-restore-ha.yaml");
    assert!(d["line"].as_u64().unwrap() > 0 && d["column"].as_u64().unwrap() > 0);
    assert!(d["message"].as_str().unwrap().contains("snapshot"));

    // Unreadable input and bad usage: 2.
    let unreadable = runbook(&["validate", "plans/nope.yaml", "-i", COMBOS[0].2]);
    assert_eq!(unreadable.code, 2);
    insta::assert_snapshot!("validate_unreadable", unreadable.stderr);
    // With -o json, a document on stdout all the same: CI parses it whatever happened.
    let json = runbook(&[
        "validate",
        "plans/nope.yaml",
        "-i",
        COMBOS[0].2,
        "-o",
        "json",
    ]);
    assert_eq!(json.code, 2);
    assert_eq!(json.stderr, unreadable.stderr);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["diagnostics"], serde_json::json!([]));
    assert_eq!(v["error"]["message"], "cannot read plans/nope.yaml");
    assert!(
        v["error"]["hint"]
            .as_str()
            .unwrap()
            .contains("check the path")
    );
    let set_file = runbook(&[
        "validate",
        COMBOS[0].1,
        "-i",
        COMBOS[0].2,
        "--set-file",
        "snapshot=/nonexistent/file",
        "-o",
        "json",
    ]);
    assert_eq!(set_file.code, 2);
    let v: serde_json::Value = serde_json::from_str(&set_file.stdout).unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot read the value of parameter `snapshot`")
    );
    let usage = runbook(&[
        "validate",
        COMBOS[0].1,
        "-i",
        COMBOS[0].2,
        "--set",
        "novalue",
    ]);
    assert_eq!(usage.code, 2);
    let set_file = runbook(&[
        "validate",
        COMBOS[0].1,
        "-i",
        COMBOS[0].2,
        "--set-file",
        "snapshot=/nonexistent/file",
    ]);
    assert_eq!(set_file.code, 2);
    assert!(
        set_file
            .stderr
            .contains("cannot read the value of parameter `snapshot`")
    );
}

#[test]
fn warnings_fail_only_under_deny_warnings() {
    let (_, plan, inv) = COMBOS[2];
    let r = runbook(&["validate", plan, "-i", inv, "--set", SNAP]);
    assert_eq!(r.code, 0);
    assert!(r.stderr.contains("warning[single-member]"));
    let denied = runbook(&[
        "validate",
        plan,
        "-i",
        inv,
        "--set",
        SNAP,
        "--deny-warnings",
    ]);
    assert_eq!(denied.code, 1);
    insta::assert_snapshot!(
        "validate_deny_warnings",
        format!("{}{}", denied.stdout, denied.stderr)
    );
}

#[test]
fn set_file_reads_a_value() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("snap");
    std::fs::write(&f, "/backups/from-file.db\n").unwrap();
    let r = runbook(&[
        "plan",
        COMBOS[0].1,
        "-i",
        COMBOS[0].2,
        "--set-file",
        &format!("snapshot={}", f.display()),
        "-o",
        "json",
    ]);
    assert_no_panic(&r);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["params"]["snapshot"], "/backups/from-file.db");
}

#[test]
fn unknown_set_is_an_error() {
    let r = runbook(&[
        "validate",
        COMBOS[0].1,
        "-i",
        COMBOS[0].2,
        "--set",
        SNAP,
        "--set",
        "snapshto=x",
    ]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("error[unknown-param]"), "{}", r.stderr);
    assert!(
        r.stderr.contains("parameters: apiserver_ca"),
        "{}",
        r.stderr
    );
}

#[test]
fn backup_plan_for_each_kind_of_destination() {
    for (name, to) in [
        ("scp", "backup1:/srv/etcd"),
        ("s3", "s3://backups/etcd"),
        ("dir", "/mnt/offsite/etcd"),
    ] {
        let r = runbook(&[
            "plan",
            "plans/etcd-backup.yaml",
            "-i",
            "examples/kubeadm-ha-3.yaml",
            "--set",
            "stamp=20261120T020000Z",
            "--set",
            &format!("copy_to={to}"),
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        insta::assert_snapshot!(format!("plan_text_backup_{name}"), r.stdout);
    }
}

/// Every command (the hidden one too) and every argument says what it is for, and the help of
/// every command ends with an example of that command, which comes out of clap's wrapping to
/// a 60-column terminal unchanged: an example cut at an arbitrary space no longer pastes.
#[test]
fn every_command_and_argument_has_help_and_ends_with_an_example() {
    use clap::CommandFactory;
    fn collect(cmd: &clap::Command, path: &str, out: &mut Vec<(String, clap::Command)>) {
        out.push((path.to_string(), cmd.clone()));
        for sub in cmd.get_subcommands() {
            if sub.get_name() != "help" {
                collect(sub, &format!("{path} {}", sub.get_name()), out);
            }
        }
    }
    let mut root = runbook::cli::Cli::command();
    root.build();
    let mut commands = Vec::new();
    collect(&root, "runbook", &mut commands);
    assert!(commands.len() > 20, "{}", commands.len());
    let mut problems = Vec::new();
    for (name, cmd) in &commands {
        let about = cmd.get_about().map(|s| s.to_string()).unwrap_or_default();
        if about.trim().is_empty() {
            problems.push(format!("`{name}` has no help"));
        }
        for arg in cmd.get_arguments() {
            let help = arg
                .get_help()
                .or(arg.get_long_help())
                .map(|s| s.to_string())
                .unwrap_or_default();
            if help.trim().is_empty() {
                problems.push(format!("`{name}`: argument `{}` has no help", arg.get_id()));
            }
        }
        if cmd.is_hide_set() {
            continue;
        }
        let after = cmd
            .get_after_help()
            .map(|s| s.to_string())
            .unwrap_or_default();
        let Some(at) = after.find("Example") else {
            problems.push(format!("`{name}` has no example"));
            continue;
        };
        let example = &after[at..];
        if !example.contains(&format!("{name} ")) {
            problems.push(format!("`{name}`: the example does not show `{name}`"));
        }
        let mut args: Vec<&str> = name.split(' ').skip(1).collect();
        args.push("--help");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_runbook"))
            .args(&args)
            .env("COLUMNS", "60")
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        if !help.trim_end().ends_with(example.trim_end()) {
            problems.push(format!(
                "`{name} --help` at 60 columns does not end with its example as written:\n{help}"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// `-o/--output` is the output form on every command that has a choice of forms; the spellings
/// it replaced (`--format`; `-w` and `table` of `snapshot status`) still parse to the same
/// thing for a release, and no help shows them.
#[test]
fn old_output_spellings_still_work_and_are_hidden() {
    use clap::Parser;
    let parse = |args: &[&str]| {
        let cli = runbook::cli::Cli::try_parse_from(
            std::iter::once("runbook").chain(args.iter().copied()),
        )
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        format!("{cli:?}")
    };
    let (_, plan, inv) = COMBOS[2];
    let snap = "tests/fixtures/snapshots/etcd-3.6.db";
    let pairs: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["validate", plan, "-i", inv, "--format", "json"],
            vec!["validate", plan, "-i", inv, "-o", "json"],
        ),
        (
            vec!["validate", plan, "-i", inv, "--format=json"],
            vec!["validate", plan, "-i", inv, "--output=json"],
        ),
        (
            vec!["plan", plan, "-i", inv, "--format", "dot", "--out", "p.dot"],
            vec!["plan", plan, "-i", inv, "-o", "dot", "--out", "p.dot"],
        ),
        (
            vec!["status", "r", "--format", "json"],
            vec!["status", "r", "-o", "json"],
        ),
        (
            vec!["report", "r", "--format", "junit"],
            vec!["report", "r", "-o", "junit"],
        ),
        (
            vec!["snapshot", "status", snap, "--format", "json"],
            vec!["snapshot", "status", snap, "-o", "json"],
        ),
        (
            vec!["snapshot", "status", snap, "-w", "json"],
            vec!["snapshot", "status", snap, "--output", "json"],
        ),
        (
            vec!["snapshot", "status", snap, "-w", "table"],
            vec!["snapshot", "status", snap, "-o", "text"],
        ),
        (
            vec!["apply", plan, "-i", inv, "--output", "json"],
            vec!["apply", plan, "-i", inv, "-o", "json"],
        ),
        (
            vec!["resume", "r", "--output", "json"],
            vec!["resume", "r", "-o", "json"],
        ),
    ];
    for (old, new) in &pairs {
        assert_eq!(parse(old), parse(new), "{old:?} and {new:?}");
    }
    // The binary too, end to end.
    for (old, new) in &pairs[..2] {
        let (o, n) = (runbook(old), runbook(new));
        assert_eq!(
            (o.code, &o.stdout),
            (n.code, &n.stdout),
            "{old:?}: {}",
            o.stderr
        );
        assert!(n.stdout.starts_with('{'), "{}", n.stdout);
    }
    let o = runbook(&pairs[6].0);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.starts_with('{'), "{}", o.stdout);
    // No help mentions them.
    for command in [
        vec!["validate"],
        vec!["plan"],
        vec!["status"],
        vec!["report"],
        vec!["apply"],
        vec!["resume"],
        vec!["snapshot", "status"],
    ] {
        for flag in ["-h", "--help"] {
            let mut args = command.clone();
            args.push(flag);
            let help = runbook(&args);
            assert_eq!(help.code, 0);
            for old in ["--format", "-w,", "-w <", "alias", "table,"] {
                assert!(
                    !help.stdout.contains(old),
                    "{args:?} shows {old}:\n{}",
                    help.stdout
                );
            }
            assert!(help.stdout.contains("-o, --output <FORMAT>"), "{args:?}");
        }
    }
    // Nor do the man pages and the completions.
    let man = tempfile::tempdir().unwrap();
    assert_eq!(
        runbook(&["man", "--out", man.path().to_str().unwrap()]).code,
        0
    );
    let mut texts: Vec<(String, String)> = std::fs::read_dir(man.path())
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let text = std::fs::read_to_string(e.path()).unwrap();
            (e.file_name().to_string_lossy().into_owned(), text)
        })
        .collect();
    assert!(texts.len() > 20);
    for shell in ["bash", "zsh"] {
        let r = runbook(&["completions", shell]);
        assert_eq!(r.code, 0);
        texts.push((shell.to_string(), r.stdout));
    }
    for (name, text) in &texts {
        for old in ["--format", "\\-\\-format", "'-w", "\\fB\\-w"] {
            assert!(!text.contains(old), "{name} shows {old}");
        }
    }
}

#[test]
fn completions_and_man_page_are_generated() {
    let bash = runbook(&["completions", "bash"]);
    assert_eq!(bash.code, 0);
    for word in ["apply", "resume", "snapshot", "lab", "--approve"] {
        assert!(bash.stdout.contains(word), "bash completion lacks {word}");
    }
    let man = runbook(&["man"]);
    assert_eq!(man.code, 0);
    assert!(
        man.stdout.contains(".TH runbook 1"),
        "{}",
        &man.stdout[..200.min(man.stdout.len())]
    );
    assert!(man.stdout.contains(".SH EXAMPLES"), "{}", man.stdout);
}

/// `runbook man --out DIR`: a page per command, named as man(1) looks them up, each with its
/// examples set line for line and with real minus signs, so that they paste into a shell.
#[test]
fn man_out_writes_a_page_per_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man1");
    let r = runbook(&["man", "--out", out.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for page in [
        "runbook.1",
        "runbook-apply.1",
        "runbook-validate.1",
        "runbook-snapshot.1",
        "runbook-snapshot-status.1",
        "runbook-lab.1",
        "runbook-lab-up.1",
        "runbook-man.1",
    ] {
        assert!(names.iter().any(|n| n == page), "{page} missing: {names:?}");
    }
    // Hidden commands and clap's `help` have none.
    assert!(
        !names
            .iter()
            .any(|n| n.contains("init") || n.contains("help")),
        "{names:?}"
    );
    let apply = std::fs::read_to_string(out.join("runbook-apply.1")).unwrap();
    assert!(
        apply.starts_with(".ie") || apply.contains(".TH runbook-apply 1"),
        "{apply}"
    );
    let examples = &apply[apply.find(".SH EXAMPLES\n.nf\n").expect("examples section")..];
    assert!(
        examples.contains("  runbook apply plans/etcd\\-restore\\-ha.yaml \\e\n"),
        "{examples}"
    );
    assert!(examples.contains(".fi\n"), "{examples}");
    assert!(
        apply.contains(".SH \"EXIT STATUS\"\n0 every step succeeded"),
        "{apply}"
    );
}

#[test]
fn the_ci_example_checks_every_plan_and_fails_on_warnings() {
    let out_dir = tempfile::tempdir().unwrap();
    let run = |matrix: &std::path::Path| {
        std::process::Command::new("sh")
            .arg("examples/ci/check-plans.sh")
            .arg(matrix)
            .arg(out_dir.path())
            .current_dir(common::root())
            .env("RUNBOOK", env!("CARGO_BIN_EXE_runbook"))
            .output()
            .unwrap()
    };
    let out = run(std::path::Path::new("examples/ci/plans.matrix"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("checked 25 plan/inventory pairs, 0 failed"),
        "{stdout}"
    );
    assert!(
        out_dir
            .path()
            .join("etcd-backup-kubeadm-ha-3.json")
            .exists()
    );
    // Every bundled plan is in the matrix.
    let matrix = std::fs::read_to_string(common::root().join("examples/ci/plans.matrix")).unwrap();
    for plan in std::fs::read_dir(common::root().join("plans")).unwrap() {
        let name = plan.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            matrix.contains(&format!("plans/{name}")),
            "{name} is not checked by the CI example"
        );
    }
    // A warning fails the job unless the line allows it.
    let strict = out_dir.path().join("strict.matrix");
    std::fs::write(
        &strict,
        "plans/etcd-restore-single.yaml examples/kubeadm-single.yaml snapshot=/b/e.db\n",
    )
    .unwrap();
    let out = run(&strict);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 failed"));
}

/// A `snapshot save` file is whole pages and a 32-byte SHA-256; a raw copy of member/snap/db
/// is whole pages. Anything else was cut or appended to, and is refused as damaged.
#[test]
fn snapshot_status_refuses_files_cut_padded_or_appended_to() {
    let fixtures = common::root().join("tests/fixtures/snapshots");
    let saved = std::fs::read(fixtures.join("etcd-3.6.db")).unwrap();
    let raw = std::fs::read(fixtures.join("member-snap-db-3.6")).unwrap();
    assert_eq!(saved.len(), 5 * 4096 + 32);
    let dir = tempfile::tempdir().unwrap();
    let status = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let r = runbook(&["snapshot", "status", p.to_str().unwrap(), "-o", "json"]);
        assert_no_panic(&r);
        (r, p.display().to_string())
    };
    // The good ones.
    for (name, bytes, trailer) in [("saved.db", &saved, "ok"), ("raw.db", &raw, "absent")] {
        let (r, _) = status(name, bytes);
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(v["sha256"], trailer, "{name}");
        assert_eq!(v["damage"], serde_json::Value::Null);
        assert_eq!(v["revision"], 5);
    }
    let garbage: Vec<u8> = (0..5000u32).map(|i| (i * 7 + 13) as u8).collect();
    let mut cases: Vec<(String, Vec<u8>, String)> = Vec::new();
    for cut in 1..=31 {
        cases.push((
            format!("cut-{cut}"),
            saved[..saved.len() - cut].to_vec(),
            format!("{} byte", 32 - cut),
        ));
    }
    for n in [1usize, 100, 480, 4096, 4096 + 32] {
        let mut b = saved.clone();
        b.extend_from_slice(&garbage[..n]);
        cases.push((
            format!("appended-{n}"),
            b,
            format!("{n} byte{} after the SHA-256 trailer: the first 20512 bytes are a `snapshot save` file (its trailer matches), appended to", if n == 1 { "" } else { "s" }),
        ));
    }
    // Padded with zeros to whole pages: it looks like a raw copy, but its trailer is there.
    let mut padded = saved.clone();
    padded.resize(6 * 4096, 0);
    cases.push((
        "zero-padded".into(),
        padded,
        "4064 bytes after the SHA-256 trailer, all zero: the first 20512 bytes are a `snapshot save` file (its trailer matches), padded with zeros".into(),
    ));
    let mut raw_plus = raw.clone();
    raw_plus.extend_from_slice(&garbage[..100]);
    cases.push((
        "raw-appended".into(),
        raw_plus,
        "100 bytes past the last whole page (4096-byte pages): neither a raw db copy (whole pages) nor a `snapshot save` file (whole pages + 32-byte SHA-256); truncated or appended to".into(),
    ));
    for (name, bytes, why) in cases {
        let (r, path) = status(&name, &bytes);
        assert_eq!(r.code, 1, "{name} must be refused: {}", r.stderr);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(v["sha256"], "damaged", "{name}: {v}");
        assert!(
            v["damage"].as_str().unwrap().contains(&why),
            "{name}: {}",
            v["damage"]
        );
        assert!(
            r.stderr.contains(&format!("error: {path} is damaged: "))
                && r.stderr.contains("hint: "),
            "{name}: {}",
            r.stderr
        );
        // The table says it too.
        let t = runbook(&["snapshot", "status", &path]);
        assert_eq!(t.code, 1);
        assert!(
            t.stdout.contains("sha256 trailer:        DAMAGED: "),
            "{}",
            t.stdout
        );
    }
}

/// Output to a reader that left (`| head -1`) or to a full disk never panics: a closed pipe
/// is the reader's choice (the command's own exit status stands), a full disk is an error.
#[test]
fn closed_or_full_stdout_never_panics() {
    use std::process::{Command, Stdio};
    // Port 1 refuses at once: a real run that stops at connecting.
    let dir = common::unreachable_scratch("out");
    let d = dir.path();
    let plan_ha = common::root().join("plans/etcd-restore-ha.yaml");
    let inv_ha = common::root().join("examples/kubeadm-ha-3.yaml");
    let fixture = common::root().join("tests/fixtures/snapshots/etcd-3.6.db");
    let closed_pipe = || {
        let (r, w) = std::io::pipe().unwrap();
        drop(r);
        Stdio::from(w)
    };
    let full = || {
        Stdio::from(
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap(),
        )
    };
    // (exit status, stderr) with stdout (and stderr too when `both`) going to `out`.
    let run = |args: &[&str], out: Stdio, both: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_runbook"));
        c.args(args)
            .current_dir(d)
            .env("NO_COLOR", "1")
            .env("RUNBOOK_LOCK_DIR", d.join("locks"))
            .env_remove("XDG_RUNTIME_DIR")
            .stdin(Stdio::null())
            .stdout(out);
        if both {
            c.stderr(closed_pipe());
        } else {
            c.stderr(Stdio::piped());
        }
        let o = c.output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        let r = common::Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::new(),
            stderr,
        };
        assert_no_panic(&r);
        r
    };
    // A run to show: stops at connecting (exit 1), its control directory removed.
    let apply = [
        "apply",
        "plan.yaml",
        "-i",
        "inv.yaml",
        "--run-dir",
        "run",
        "--yes",
    ];
    let r = run(&apply, closed_pipe(), false);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let (plan, inv, snap) = (
        plan_ha.to_str().unwrap(),
        inv_ha.to_str().unwrap(),
        fixture.to_str().unwrap(),
    );
    let commands: Vec<(Vec<&str>, i32)> = vec![
        (vec!["status", "run"], 0),
        (vec!["status", "run", "-o", "json"], 0),
        (vec!["report", "run"], 1),
        (vec!["completions", "zsh"], 0),
        (vec!["man"], 0),
        (vec!["schema", "plan"], 0),
        (vec!["plan", plan, "-i", inv, "--set", SNAP], 0),
        (vec!["validate", plan, "-i", inv, "--set", SNAP], 0),
        (vec!["validate", plan, "-i", inv, "-o", "json"], 1),
        (vec!["snapshot", "status", snap], 0),
        (vec!["snapshot", "status", snap, "-o", "json"], 0),
    ];
    for (args, code) in &commands {
        // The reader left: quiet, and the command's own status.
        let r = run(args, closed_pipe(), false);
        assert_eq!(r.code, *code, "{args:?} to a closed pipe: {}", r.stderr);
        assert!(
            !r.stderr.contains("standard output"),
            "{args:?}: {}",
            r.stderr
        );
        // Everything to a closed pipe, stderr too (`2>&1 | head -1`).
        let r = run(args, closed_pipe(), true);
        assert_eq!(r.code, *code, "{args:?} with stderr closed too");
        // A full disk: an error and a failure.
        let r = run(args, full(), false);
        assert_eq!(r.code, 2, "{args:?} to /dev/full: {}", r.stderr);
        assert!(
            r.stderr.contains("error: cannot write to standard output")
                && r.stderr.contains("No space left on device"),
            "{args:?}: {}",
            r.stderr
        );
    }
    // apply itself, to a closed pipe and to a full disk: no panic, its control directory gone.
    for (out, both, is_full) in [
        (closed_pipe(), false, false),
        (closed_pipe(), true, false),
        (full(), false, true),
    ] {
        let _ = std::fs::remove_dir_all(d.join("run"));
        let r = run(&apply, out, both);
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert_eq!(
            r.stderr.contains("error: cannot write to standard output"),
            is_full,
            "{}",
            r.stderr
        );
        let dirs = std::fs::read_to_string(d.join("run/ssh-control-dirs")).unwrap();
        for c in dirs.lines() {
            assert!(!std::path::Path::new(c).exists(), "{c} was left behind");
        }
    }
}

/// A node lock left by a run whose process is gone (on this machine) is reported as such, and
/// `runbook unlock` removes it; one that may still be held is removed only with --force.
/// `--local` makes this machine the node; each runbook runs in its own mount namespace with
/// a scratch directory over /var/lib/runbook, so the machine's real lock file is never touched.
#[test]
fn unlock_removes_locks_whose_holder_is_gone_and_others_only_with_force() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cluster = format!(
        "ul{}",
        d.file_name()
            .unwrap()
            .to_string_lossy()
            .to_lowercase()
            .replace(['.', '_'], "")
    );
    std::fs::write(
        d.join("plan.yaml"),
        "name: t\nsteps:\n  - { id: a, on: n1, run: 'true' }\n",
    )
    .unwrap();
    std::fs::write(
        d.join("inv.yaml"),
        format!(
            "cluster: {cluster}\netcd: {{ version: \"3.5.16\" }}\nnodes:\n  - {{ name: n1, address: 127.0.0.1, roles: [etcd] }}\n"
        ),
    )
    .unwrap();
    let var_lib = d.join("var-lib-runbook");
    std::fs::create_dir(&var_lib).unwrap();
    let lock = var_lib.join("runbook.lock");
    let run = |args: &[&str]| {
        let out = std::process::Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            // The mount point exists only once some run has made it (not on a fresh machine).
            .arg("mkdir -p /var/lib/runbook && mount --bind \"$0\" /var/lib/runbook && exec \"$@\"")
            .arg(&var_lib)
            .arg(env!("CARGO_BIN_EXE_runbook"))
            .args(args)
            .current_dir(d)
            .env("NO_COLOR", "1")
            .env("RUNBOOK_LOCK_DIR", d.join("locks"))
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let r = common::Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        assert_no_panic(&r);
        r
    };
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let host = host.trim();
    let plant = |host: &str, pid: u32, extra: &str| {
        std::fs::write(
            &lock,
            format!(
                "{{\"run_id\":\"old-run\",\"cluster\":\"{cluster}\",\"user\":\"alice\",\"host\":\"{host}\",\"pid\":{pid},\"since\":\"2026-11-21T00:00:00Z\"{extra}}}\n"
            ),
        )
        .unwrap();
    };
    let apply = [
        "apply",
        "plan.yaml",
        "-i",
        "inv.yaml",
        "--local",
        "--run-dir",
        "run",
    ];
    let unlock = ["unlock", cluster.as_str(), "-i", "inv.yaml", "--local"];
    // A pid that was just freed.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let me = std::process::id();
    let my_start: u64 = {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let rest = &stat[stat.rfind(')').unwrap() + 1..];
        rest.split_whitespace().nth(19).unwrap().parse().unwrap()
    };

    // A dead holder on this host: said so, and unlock (without --force) removes it.
    plant(host, dead, "");
    let r = run(&apply);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "n1 is locked by run old-run by alice@{host} (pid {dead}) since 2026-11-21T00:00:00Z: held by pid {dead} on this host, which is no longer running"
        )),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!(
            "`runbook unlock {cluster} -i {}/inv.yaml --local` removes a lock whose holder is provably gone, and with --force any lock",
            d.display()
        )),
        "{}",
        r.stderr
    );
    let _ = std::fs::remove_dir_all(d.join("run"));
    let r = run(&unlock);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("n1: unlocked (was locked by run old-run"),
        "{}",
        r.stderr
    );
    assert!(!lock.exists());
    let r = run(&unlock);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("n1: not locked"), "{}", r.stderr);

    // A pid that is running, but a later process than the holder's: the pid was reused.
    plant(host, me, &format!(",\"start_time\":{}", my_start - 1));
    let r = run(&unlock);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("(the pid now belongs to a process started later)"),
        "{}",
        r.stderr
    );
    assert!(!lock.exists());

    // A holder still running, and one on another machine: kept, unless --force.
    for (h, extra) in [
        (host, format!(",\"start_time\":{my_start}")),
        ("laptop", String::new()),
    ] {
        plant(h, me, &extra);
        let r = run(&apply);
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(!r.stderr.contains("no longer running"), "{}", r.stderr);
        let _ = std::fs::remove_dir_all(d.join("run"));
        let r = run(&unlock);
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert!(
            r.stderr
                .contains("left in place, as runbook cannot tell that run is over")
                && r.stderr.contains("--force"),
            "{}",
            r.stderr
        );
        assert!(lock.exists());
        let mut forced = unlock.to_vec();
        forced.push("--force");
        let r = run(&forced);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(r.stderr.contains("removed with --force"), "{}", r.stderr);
        assert!(!lock.exists());
    }

    // Unlocked, the run goes; its own lock records who it was, and is gone at the end.
    let r = run(&apply);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!lock.exists());
    // The cluster is named, and must be the inventory's.
    let r = run(&["unlock", "other", "-i", "inv.yaml", "--local"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("is not the inventory of other"),
        "{}",
        r.stderr
    );
}

/// A FIFO or a device given to `snapshot status` is refused before it is opened (opening a
/// FIFO for reading waits for a writer).
#[test]
fn snapshot_status_refuses_what_is_not_a_regular_file_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("snapshot.db");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    for (path, why) in [
        (
            fifo.to_str().unwrap(),
            "it is a FIFO (named pipe), not a regular file",
        ),
        ("/dev/zero", "it is a character device, not a regular file"),
    ] {
        let r = common::runbook_within(dir.path(), &["snapshot", "status", path], 20)
            .unwrap_or_else(|| panic!("snapshot status {path} never finished"));
        assert_no_panic(&r);
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(
            r.stderr.contains(&format!("error: cannot read {path}")) && r.stderr.contains(why),
            "{}",
            r.stderr
        );
    }
}

/// The bundled plans travel in the binary: listed with their parameters, and run by name from
/// a directory that has no plans/ at all, with the same fingerprint as the file in the tree.
#[test]
fn bundled_plans_are_listed_and_run_by_name_anywhere() {
    let listed = runbook(&["plans", "-o", "json"]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    let v: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    let on_disk = std::fs::read_dir(common::root().join("plans"))
        .unwrap()
        .count();
    assert_eq!(names.len(), on_disk, "{names:?}");
    let backup = v
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "etcd-backup")
        .unwrap();
    assert!(backup["description"].as_str().unwrap().contains("snapshot"));
    assert!(
        backup["params"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "copy_to" && p["required"] == true),
        "{backup}"
    );
    let text = runbook(&["plans"]);
    assert!(text.stdout.contains("etcd-restore-ha\n"), "{}", text.stdout);
    assert!(
        text.stdout.contains("--set snapshot=...  (required)"),
        "{}",
        text.stdout
    );

    let elsewhere = tempfile::tempdir().unwrap();
    let inv = common::root().join("examples/kubeadm-ha-3.yaml");
    let inv = inv.to_str().unwrap();
    let by_name = common::runbook_in(
        elsewhere.path(),
        &[
            "plan",
            "etcd-restore-ha",
            "-i",
            inv,
            "--set",
            SNAP,
            "-o",
            "json",
        ],
    );
    assert_eq!(by_name.code, 0, "{}", by_name.stderr);
    let by_path = runbook(&[
        "plan",
        "plans/etcd-restore-ha.yaml",
        "-i",
        inv,
        "--set",
        SNAP,
        "-o",
        "json",
    ]);
    let fp =
        |out: &str| serde_json::from_str::<serde_json::Value>(out).unwrap()["fingerprint"].clone();
    assert_eq!(fp(&by_name.stdout), fp(&by_path.stdout));

    // A saved plan of a bundled plan records it as such and runs (here, dry) as reviewed.
    let saved = elsewhere.path().join("reviewed.json");
    let saved = saved.to_str().unwrap();
    let out = common::runbook_in(
        elsewhere.path(),
        &[
            "plan",
            "etcd-restore-ha",
            "-i",
            inv,
            "--set",
            SNAP,
            "-o",
            "json",
            "--out",
            saved,
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(saved).unwrap()).unwrap();
    assert_eq!(
        doc["saved_plan"]["plan"]["path"],
        "bundled:etcd-restore-ha.yaml"
    );
    let fingerprint = doc["fingerprint"].as_str().unwrap();
    let run = common::runbook_in(
        elsewhere.path(),
        &["apply", saved, "--approve", fingerprint, "--dry-run"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
}

/// `schedule systemd` writes a unit pair systemd accepts (`systemd-analyze verify`), whose
/// command line carries every value literally, and refuses a fingerprint that is not the plan's.
#[test]
fn a_systemd_schedule_is_what_systemd_accepts_and_runs_only_the_reviewed_plan() {
    let dir = tempfile::tempdir().unwrap();
    let inv = common::root().join("examples/kubeadm-ha-3.yaml");
    let inv = inv.to_str().unwrap();
    // A value systemd would otherwise expand: specifiers, variables, quotes.
    let copy_to = "copy_to=/mnt/backups/%n $HOME \"q\"";
    let plan = runbook(&[
        "plan",
        "etcd-backup",
        "-i",
        inv,
        "--set",
        copy_to,
        "-o",
        "json",
    ]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let v: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    let fp = v["fingerprint"].as_str().unwrap();
    let out = dir.path().to_str().unwrap();
    let wrong = runbook(&[
        "schedule",
        "systemd",
        "etcd-backup",
        "-i",
        inv,
        "--set",
        copy_to,
        "--approve",
        "sha256:0000",
        "--out",
        out,
    ]);
    assert_eq!(wrong.code, 2, "{}", wrong.stderr);
    assert!(
        wrong
            .stderr
            .contains("the approval is for a different plan"),
        "{}",
        wrong.stderr
    );
    let made = runbook(&[
        "schedule",
        "systemd",
        "etcd-backup",
        "-i",
        inv,
        "--set",
        copy_to,
        "--approve",
        fp,
        "--on-calendar",
        "*-*-* 02:30:00",
        "--name",
        "backup",
        "--out",
        out,
    ]);
    assert_eq!(made.code, 0, "{}", made.stderr);
    let service = std::fs::read_to_string(dir.path().join("runbook-backup.service")).unwrap();
    let timer = std::fs::read_to_string(dir.path().join("runbook-backup.timer")).unwrap();
    assert!(timer.contains("Persistent=true") && timer.contains("OnCalendar=*-*-* 02:30:00"));
    // At the time asked: systemd's default accuracy would let it slip by up to a minute.
    assert!(timer.contains("\nAccuracySec=1s\n"), "{timer}");
    assert!(
        service.contains(&format!("\"--approve\" \"{fp}\""))
            && service.contains("\"bundled:etcd-backup.yaml\"")
            && service.contains("\"copy_to=/mnt/backups/%%n $$HOME \\\"q\\\"\""),
        "{service}"
    );
    let verify = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.path().join("runbook-backup.service"))
        .arg(dir.path().join("runbook-backup.timer"))
        .output()
        .expect("systemd-analyze (tests/run.sh installs systemd)");
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}

/// `snapshot list DIR`: every snapshot, newest first, checked like `snapshot status` and
/// against its `.sha256`; one that does not check out is marked and fails the command.
#[test]
fn snapshot_list_checks_every_snapshot_of_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fixture = common::root().join("tests/fixtures/snapshots/etcd-3.6.db");
    let bytes = std::fs::read(&fixture).unwrap();
    let digest = {
        use sha2::Digest as _;
        sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    std::fs::write(d.join("etcd-good.db"), &bytes).unwrap();
    std::fs::write(
        d.join("etcd-good.db.sha256"),
        format!("{digest}  etcd-good.db\n"),
    )
    .unwrap();
    std::fs::write(d.join("etcd-other.db"), &bytes).unwrap();
    std::fs::write(
        d.join("etcd-other.db.sha256"),
        format!("{}  etcd-other.db\n", "0".repeat(64)),
    )
    .unwrap();
    std::fs::write(d.join("etcd-cut.db"), &bytes[..bytes.len() - 7]).unwrap();
    std::fs::write(d.join("notes.txt"), "not a snapshot").unwrap();
    let listed = runbook(&["snapshot", "list", d.to_str().unwrap(), "-o", "json"]);
    assert_eq!(listed.code, 1, "{}", listed.stderr);
    assert!(
        listed.stderr.contains("2 of 3 snapshots"),
        "{}",
        listed.stderr
    );
    let v: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let by_file = |f: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|e| e["file"] == f)
            .unwrap_or_else(|| panic!("{f} not listed: {v}"))
            .clone()
    };
    assert_eq!(v.as_array().unwrap().len(), 3, "{v}");
    let good = by_file("etcd-good.db");
    assert_eq!(good["ok"], true);
    assert_eq!(good["revision"], 5);
    assert_eq!(good["check"], "ok (trailer, .sha256)");
    assert_eq!(by_file("etcd-other.db")["check"], ".sha256 DIFFERS");
    assert_eq!(by_file("etcd-cut.db")["ok"], false);
    // Only the good one left: the listing passes.
    std::fs::remove_file(d.join("etcd-other.db")).unwrap();
    std::fs::remove_file(d.join("etcd-cut.db")).unwrap();
    let clean = runbook(&["snapshot", "list", d.to_str().unwrap()]);
    assert_eq!(clean.code, 0, "{}", clean.stderr);
    assert!(clean.stdout.starts_with("FILE"), "{}", clean.stdout);
}

/// A CronJob runs in a container: a plan file travels in the ConfigMap with the inventory
/// (the operator's path does not exist there), and a `--set-file` is refused, writing nothing.
#[test]
fn a_cronjob_carries_its_plan_file_and_refuses_local_files() {
    let inv = common::root().join("examples/kubeadm-ha-3.yaml");
    let inv = inv.to_str().unwrap();
    let plan = "plans/etcd-health.yaml";
    let reviewed = runbook(&["plan", plan, "-i", inv, "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&reviewed.stdout).unwrap();
    let fp = v["fingerprint"].as_str().unwrap();
    let base = ["schedule", "cronjob", plan, "-i", inv, "--approve", fp];
    let mut args = base.to_vec();
    args.extend(["--schedule", "0 * * * *", "--image", "r:1"]);
    let out = runbook(&args);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let docs: Vec<serde_json::Value> = out
        .stdout
        .split("\n---\n")
        .skip(1)
        .map(|d| serde_saphyr::from_str(d).unwrap())
        .collect();
    let data = &docs[0]["data"];
    assert!(
        data["plan.yaml"]
            .as_str()
            .unwrap()
            .contains("name: etcd-health")
    );
    assert!(
        data["inventory.yaml"]
            .as_str()
            .unwrap()
            .contains("cluster: prod-eu1")
    );
    let container = &docs[1]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["args"][1], "/etc/runbook/plan.yaml",
        "{container}"
    );
    assert_eq!(docs[1]["spec"]["concurrencyPolicy"], "Forbid");

    let dir = tempfile::tempdir().unwrap();
    let value = dir.path().join("copy_to");
    std::fs::write(&value, "/mnt/offsite\n").unwrap();
    let set_file = format!("copy_to={}", value.display());
    let backup = "plans/etcd-backup.yaml";
    let reviewed = runbook(&[
        "plan",
        backup,
        "-i",
        inv,
        "--set-file",
        &set_file,
        "-o",
        "json",
    ]);
    assert_eq!(reviewed.code, 0, "{}", reviewed.stderr);
    let v: serde_json::Value = serde_json::from_str(&reviewed.stdout).unwrap();
    let fp = v["fingerprint"].as_str().unwrap();
    let refused = runbook(&[
        "schedule",
        "cronjob",
        backup,
        "-i",
        inv,
        "--set-file",
        &set_file,
        "--approve",
        fp,
        "--schedule",
        "0 * * * *",
        "--image",
        "r:1",
    ]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(refused.stderr.contains("--set-file"), "{}", refused.stderr);
    assert!(refused.stdout.is_empty());
}

/// `snapshot get` on a real Kubernetes 1.34 snapshot (tests/fixtures/kubernetes): objects
/// print exactly as kubectl printed them from the live cluster, the CRD (stored as v1beta1)
/// as v1; the encrypted Secret only with its key; `--for-apply` leaves out what
/// kube-apiserver owns; a mistyped resource gets a suggestion.
#[test]
fn snapshot_get_prints_objects_as_kubectl_does() {
    let dir = "tests/fixtures/kubernetes";
    let snap = format!("{dir}/k8s-1.34.db");
    let config = format!("{dir}/encryption-config.yaml");
    for (args, kubectl) in [
        (
            vec!["crd", "widgets.example.com"],
            "crd-widgets.example.com",
        ),
        (
            vec!["widgets.example.com", "w1", "-n", "recover"],
            "widget-w1",
        ),
        (vec!["cm", "settings", "-n", "recover"], "cm-settings"),
        (vec!["ns/recover"], "ns-recover"),
        (
            vec![
                "secret",
                "api-token",
                "-n",
                "recover",
                "--encryption-config",
                &config,
            ],
            "secret-api-token",
        ),
    ] {
        let mut a = vec!["snapshot", "get", &snap];
        a.extend(&args);
        a.extend(["-o", "json"]);
        let out = runbook(&a);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        let ours: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        let theirs: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{dir}/kubectl-{kubectl}.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(ours, theirs, "{args:?}");
    }

    let census = runbook(&["snapshot", "get", &snap]);
    assert_eq!(census.code, 0);
    assert!(
        census.stdout.contains("widgets.example.com"),
        "{}",
        census.stdout
    );

    // Encrypted: listed as such, refused as an object without its key.
    let listed = runbook(&["snapshot", "get", &snap, "secrets", "-n", "recover"]);
    assert_eq!(listed.code, 0);
    assert!(
        listed.stdout.contains("api-token") && listed.stdout.contains("encrypted (aescbc key1)")
    );
    let refused = runbook(&[
        "snapshot",
        "get",
        &snap,
        "secret",
        "api-token",
        "-n",
        "recover",
        "-o",
        "yaml",
    ]);
    assert_eq!(refused.code, 1);
    assert!(
        refused
            .stderr
            .contains("encrypted with aescbc key \"key1\""),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("--encryption-config"),
        "{}",
        refused.stderr
    );

    // For re-creation: none of what kube-apiserver owns; a Deployment scaled to 0 stays at 0.
    let apply = runbook(&[
        "snapshot",
        "get",
        &snap,
        "deploy",
        "api",
        "-n",
        "recover",
        "--for-apply",
    ]);
    assert_eq!(apply.code, 0, "{}", apply.stderr);
    let v: serde_json::Value = serde_saphyr::from_str(&apply.stdout).unwrap();
    for gone in [
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "generation",
        "managedFields",
    ] {
        assert!(
            v["metadata"].get(gone).is_none(),
            "{gone}: {}",
            apply.stdout
        );
    }
    assert!(v.get("status").is_none());
    assert_eq!(v["spec"]["replicas"], 0);
    assert_eq!(v["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    assert_eq!(v["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 1);

    let typo = runbook(&["snapshot", "get", &snap, "widgts"]);
    assert_eq!(typo.code, 1);
    assert!(
        typo.stderr.contains("did you mean widgets.example.com"),
        "{}",
        typo.stderr
    );
    let mixed = runbook(&["snapshot", "get", &snap, "ns/recover", "secrets"]);
    assert_eq!(mixed.code, 2, "{}", mixed.stderr);
    let apply_nowhere = runbook(&["snapshot", "get", &snap, "cm", "--apply"]);
    assert_eq!(
        apply_nowhere.code, 2,
        "--apply needs a cluster: {}",
        apply_nowhere.stderr
    );
}

/// The flag-change plan refuses, at the `with:` it came through, values etcd itself would
/// refuse at start (a member that never comes back), before any host is reached.
#[test]
fn set_flags_refuses_what_etcd_refuses_at_start() {
    let r = runbook(&[
        "validate",
        "plans/etcd-set-flags.yaml",
        "-i",
        "examples/kubeadm-ha-3.yaml",
        "--set",
        "set=heartbeat-interval=300 election-timeout=1000",
    ]);
    assert_no_panic(&r);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("election-timeout 1000 ms is less than 5 times heartbeat-interval 300 ms")
            && r.stderr.contains("--> plans/etcd-set-flags.yaml:"),
        "{}",
        r.stderr
    );
    let r = runbook(&[
        "validate",
        "plans/etcd-set-flags.yaml",
        "-i",
        "examples/kubeadm-ha-3.yaml",
        "--set",
        "set=quota-backend-bytes",
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("\"quota-backend-bytes\" is not flag=value"),
        "{}",
        r.stderr
    );
}
