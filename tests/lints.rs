//! Every DESIGN.md §5 rule, each with a failing input (a realistic mistake made to a bundled
//! plan or inventory) and a passing one, and the located diagnostic snapshotted.

mod common;

use std::path::Path;

use common::{assert_no_panic, root, runbook_in};
use runbook::lint::RULES;

const HA: &str = "plans/etcd-restore-ha.yaml";
const HA3: &str = "examples/kubeadm-ha-3.yaml";

/// A plan or inventory edit: (file, from, to). `from` must occur in the file.
type Edit = (&'static str, &'static str, &'static str);

struct Case {
    code: &'static str,
    /// Edits turning the passing input into the failing one.
    edits: &'static [Edit],
    /// Extra `--set` on the failing run.
    sets: &'static [&'static str],
    /// A standalone plan instead of the bundled one: (passing, failing).
    standalone: Option<(&'static str, &'static str)>,
    inventory: &'static str,
    warning: bool,
}

const fn edit(code: &'static str, edits: &'static [Edit]) -> Case {
    Case {
        code,
        edits,
        sets: &[],
        standalone: None,
        inventory: HA3,
        warning: false,
    }
}

const CASES: &[Case] = &[
    edit(
        "restore-token-mismatch",
        &[(
            HA,
            "      token: \"{{ params.token }}\"\n",
            "      token: \"{{ params.token }}-{{ node.name }}\"\n",
        )],
    ),
    edit(
        "restore-cluster-mismatch",
        &[(
            HA,
            "      token: \"{{ params.token }}\"\n",
            "      token: \"{{ params.token }}\"\n      initial_cluster: \"{{ node.name }}={{ node.peer_url }}\"\n",
        )],
    ),
    Case {
        standalone: Some((RESTORE_ALL, RESTORE_TWO_OF_THREE)),
        ..edit("restore-partial-cluster", &[])
    },
    edit(
        "restore-member-identity",
        &[(
            HA,
            "      token: \"{{ params.token }}\"\n",
            "      token: \"{{ params.token }}\"\n      name: cp1\n",
        )],
    ),
    edit(
        "restore-snapshot-mismatch",
        &[(
            HA,
            "      source: \"{{ params.snapshot }}\"",
            "      source: \"/backups/{{ node.name }}.db\"",
        )],
    ),
    edit(
        "restore-while-running",
        &[(
            HA,
            "      - { step: wait-etcd-gone, same_node: true }\n",
            "",
        )],
    ),
    edit(
        "restore-unverified-snapshot",
        &[(
            HA,
            "    needs: [verify-snapshot]\n\n  - id: stop-apiserver",
            "\n  - id: stop-apiserver",
        )],
    ),
    Case {
        warning: true,
        ..edit(
            "etcdctl-snapshot-removed",
            &[(
                HA,
                "      token: \"{{ params.token }}\"\n",
                "      token: \"{{ params.token }}\"\n      tool: etcdctl\n",
            )],
        )
    },
    edit(
        "etcdctl-snapshot-removed",
        &[
            (
                HA,
                "      token: \"{{ params.token }}\"\n",
                "      token: \"{{ params.token }}\"\n      tool: etcdctl\n",
            ),
            (HA3, "version: \"3.5.16\"", "version: \"3.6.1\""),
        ],
    ),
    Case {
        warning: true,
        ..edit(
            "restore-no-bump-revision",
            &[(
                HA,
                "      token: \"{{ params.token }}\"\n",
                "      token: \"{{ params.token }}\"\n      bump_revision: 0\n",
            )],
        )
    },
    Case {
        warning: true,
        sets: &["token=etcd-cluster"],
        ..edit("restore-token-reused", &[])
    },
    Case {
        sets: &["parking_dir=/etc/kubernetes/manifests/parked"],
        ..edit("manifest-parking-inside", &[])
    },
    edit(
        "apiserver-before-healthy",
        &[(
            HA,
            "    needs: [verify-cluster]\n",
            "    needs: [start-etcd]\n",
        )],
    ),
    edit(
        "destructive-without-rollback",
        &[(
            HA,
            "    rollback: >-\n      mv {{ params.parking_dir }}/kube-apiserver.yaml {{ params.parking_dir }}/kube-controller-manager.yaml\n      {{ params.parking_dir }}/kube-scheduler.yaml {{ etcd.manifests_dir }}/ on {{ node.name }};\n      kubelet starts the control plane again.\n",
            "",
        )],
    ),
    edit(
        "undeclared-destructive",
        &[(
            HA,
            "    needs: [wait-apiserver-gone]\n    destructive: true\n",
            "    needs: [wait-apiserver-gone]\n",
        )],
    ),
    Case {
        standalone: Some((DEFRAG_SERIAL, DEFRAG_PARALLEL)),
        ..edit("defrag-not-serial", &[])
    },
    Case {
        standalone: Some((FORCE_GUARDED, FORCE_UNGUARDED)),
        ..edit("force-new-cluster-unguarded", &[])
    },
    Case {
        standalone: Some((ROLL_AFTER_SNAPSHOT, ROLL_WITHOUT_SNAPSHOT)),
        ..edit("roll-without-snapshot", &[])
    },
    Case {
        warning: true,
        standalone: Some((FLAGS_QUOTA_4G, FLAGS_QUOTA_16G)),
        ..edit("quota-above-recommended", &[])
    },
    Case {
        standalone: Some((REJOIN, REJOIN_CLEAR_UNGUARDED)),
        ..edit("clear-data-while-running", &[])
    },
    Case {
        standalone: Some((REJOIN, REJOIN_OLD_DATA)),
        ..edit("member-add-with-old-data", &[])
    },
    Case {
        standalone: Some((RAW_RESTORE_BESIDE, RAW_RESTORE_INTO_LIVE)),
        ..edit("restore-data-dir-not-cleared", &[])
    },
    Case {
        warning: true,
        standalone: Some((DEFRAG_SERIAL, RAW_RESTORE_BESIDE)),
        ..edit("raw-restore", &[])
    },
    Case {
        warning: true,
        ..edit(
            "even-members",
            &[(
                HA3,
                "  - { name: cp3, address: 10.0.0.13, roles: [etcd, control-plane], ssh: { port: 2222 } }\n",
                "  - { name: cp3, address: 10.0.0.13, roles: [etcd, control-plane] }\n  - { name: cp4, address: 10.0.0.14, roles: [etcd, control-plane] }\n",
            )],
        )
    },
    Case {
        warning: true,
        ..edit(
            "single-member",
            &[(
                HA3,
                "  - { name: cp2, address: 10.0.0.12, roles: [etcd, control-plane] }\n  - { name: cp3, address: 10.0.0.13, roles: [etcd, control-plane], ssh: { port: 2222 } }\n",
                "",
            )],
        )
    },
];

/// A compact restore: the same safety chain as the bundled plan, barriers instead of pairs.
macro_rules! restore_over {
    ($targets:literal) => {
        concat!("name: restore
steps:
  - { id: verify, action: snapshot.verify, with: { path: /backups/etcd.db } }
  - { id: copy, for_each: { role: etcd }, action: snapshot.distribute, with: { source: /backups/etcd.db, dest: /var/tmp/etcd.db }, needs: [verify] }
  - { id: stop, for_each: { role: etcd }, action: manifest.stop, with: { manifests: [kube-apiserver.yaml, etcd.yaml] }, needs: [verify], destructive: true, rollback: move the manifests back }
  - { id: gone, for_each: { role: etcd }, action: wait.process_gone, with: { process: etcd }, needs: [stop] }
  - id: restore
    for_each: ", $targets, "
    action: etcd.restore
    with: { snapshot: /var/tmp/etcd.db, token: fresh-token }
    needs: [gone, copy]
    destructive: true
    rollback: move the kept data back
")
    };
}
const RESTORE_ALL: &str = restore_over!("{ role: etcd }");
const RESTORE_TWO_OF_THREE: &str = restore_over!("{ nodes: [cp1, cp2] }");
const DEFRAG_SERIAL: &str = "name: defrag
steps:
  - { id: defrag-cp2, on: cp2, action: etcd.defrag }
  - { id: defrag-cp3, on: cp3, action: etcd.defrag, needs: [defrag-cp2] }
  - { id: defrag-cp1, on: cp1, action: etcd.defrag, needs: [defrag-cp3] }
";
const DEFRAG_PARALLEL: &str = "name: defrag
steps:
  - id: defrag
    for_each: { role: etcd }
    action: etcd.defrag
";
const FORCE_GUARDED: &str = "name: quorum
steps:
  - { id: stop-others, for_each: { nodes: [cp2, cp3] }, action: manifest.stop, with: { manifests: [etcd.yaml] }, destructive: true, rollback: move etcd.yaml back }
  - { id: others-gone, for_each: { nodes: [cp2, cp3] }, action: wait.process_gone, with: { process: etcd }, needs: [{ step: stop-others, same_node: true }] }
  - id: force
    on: cp1
    run: etcd --force-new-cluster --data-dir {{ etcd.data_dir }}
    needs: [others-gone]
    destructive: true
    rollback: restore from the last snapshot
";
const FORCE_UNGUARDED: &str = "name: quorum
steps:
  - id: force
    on: cp1
    run: etcd --force-new-cluster --data-dir {{ etcd.data_dir }}
    destructive: true
    rollback: restore from the last snapshot
";
/// An upgrade whose snapshot is saved and verified first; then one that only saves it.
const ROLL_AFTER_SNAPSHOT: &str = "name: upgrade
steps:
  - { id: save, on: local, action: snapshot.save, with: { dest: /var/backups/etcd/before.db } }
  - { id: verify, on: local, action: snapshot.verify, with: { path: /var/backups/etcd/before.db }, needs: [save] }
  - id: upgrade
    on: local
    action: etcd.roll
    with: { version: \"3.6.16\" }
    needs: [verify]
    destructive: true
    rollback: move each member's kept manifest back
";
const ROLL_WITHOUT_SNAPSHOT: &str = "name: upgrade
steps:
  - { id: save, on: local, action: snapshot.save, with: { dest: /var/backups/etcd/before.db } }
  - id: upgrade
    on: local
    action: etcd.roll
    with: { version: \"3.6.16\" }
    needs: [save]
    destructive: true
    rollback: move each member's kept manifest back
";
const FLAGS_QUOTA_4G: &str = "name: flags
steps:
  - id: flags
    on: local
    action: etcd.roll
    with: { set: { quota-backend-bytes: \"4294967296\" } }
    destructive: true
    rollback: move each member's kept manifest back
";
const FLAGS_QUOTA_16G: &str = "name: flags
steps:
  - id: flags
    on: local
    action: etcd.roll
    with: { set: { quota-backend-bytes: \"17179869184\" } }
    destructive: true
    rollback: move each member's kept manifest back
";
const REJOIN: &str = "name: rejoin
steps:
  - { id: stop, on: cp2, action: manifest.stop, with: { manifests: [etcd.yaml] }, destructive: true, rollback: move etcd.yaml back }
  - { id: gone, on: cp2, action: wait.process_gone, with: { process: etcd }, needs: [stop] }
  - { id: clear, on: cp2, action: etcd.clear_data, needs: [gone], destructive: true, rollback: the old data is kept aside }
  - { id: add, on: cp2, action: etcd.member_add, needs: [clear], destructive: true, rollback: remove the unstarted member }
";
const REJOIN_CLEAR_UNGUARDED: &str = "name: rejoin
steps:
  - { id: stop, on: cp2, action: manifest.stop, with: { manifests: [etcd.yaml] }, destructive: true, rollback: move etcd.yaml back }
  - { id: clear, on: cp2, action: etcd.clear_data, needs: [stop], destructive: true, rollback: the old data is kept aside }
  - { id: add, on: cp2, action: etcd.member_add, needs: [clear], destructive: true, rollback: remove the unstarted member }
";
const REJOIN_OLD_DATA: &str = "name: rejoin
steps:
  - { id: stop, on: cp2, action: manifest.stop, with: { manifests: [etcd.yaml] }, destructive: true, rollback: move etcd.yaml back }
  - { id: gone, on: cp2, action: wait.process_gone, with: { process: etcd }, needs: [stop] }
  - { id: add, on: cp2, action: etcd.member_add, needs: [gone], destructive: true, rollback: remove the unstarted member }
";
const RAW_RESTORE_BESIDE: &str = "name: raw
steps:
  - id: restore
    on: cp1
    run: etcdutl snapshot restore /s.db --data-dir /var/lib/etcd-new
    destructive: true
    rollback: remove /var/lib/etcd-new
";
const RAW_RESTORE_INTO_LIVE: &str = "name: raw
steps:
  - id: restore
    on: cp1
    run: etcdutl snapshot restore /s.db --data-dir {{ etcd.data_dir }}
    destructive: true
    rollback: move the old data back
";

/// Copy plans/ and examples/ into a scratch dir, apply edits, return the dir.
fn workspace(edits: &[Edit]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["plans", "examples"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        for e in std::fs::read_dir(root().join(sub)).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                std::fs::copy(&p, dir.path().join(sub).join(p.file_name().unwrap())).unwrap();
            }
        }
    }
    for (file, from, to) in edits {
        let path = dir.path().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(from),
            "{file} no longer contains {from:?}: update the lint case"
        );
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    }
    dir
}

/// Like `validate`, with a trailing flag in `sets` passed as-is.
fn validate_flags(dir: &Path, plan: &str, inventory: &str, sets: &[&str]) -> common::Run {
    let (flags, sets): (Vec<&str>, Vec<&str>) = sets.iter().partition(|s| s.starts_with("--"));
    let mut args = vec!["validate", plan, "-i", inventory];
    if plan == HA {
        args.extend(["--set", "snapshot=/backups/etcd.db"]);
    }
    for s in &sets {
        args.extend(["--set", s]);
    }
    args.extend(flags);
    runbook_in(dir, &args)
}

fn validate(dir: &Path, plan: &str, inventory: &str, sets: &[&str]) -> common::Run {
    let r = validate_flags(dir, plan, inventory, sets);
    assert_no_panic(&r);
    r
}

#[test]
fn each_rule_fails_its_bad_input_and_passes_the_good_one() {
    for case in CASES {
        let bad = workspace(case.edits);
        let good = workspace(&[]);
        let (plan, good_plan) = match case.standalone {
            Some((pass, fail)) => {
                std::fs::write(bad.path().join("plans/case.yaml"), fail).unwrap();
                std::fs::write(good.path().join("plans/case.yaml"), pass).unwrap();
                ("plans/case.yaml", "plans/case.yaml")
            }
            None => (HA, HA),
        };
        let failing = validate(bad.path(), plan, case.inventory, case.sets);
        let level = if case.warning { "warning" } else { "error" };
        let tag = format!("{level}[{}]", case.code);
        assert!(
            failing.stderr.contains(&tag),
            "{}: expected {tag} in:\n{}",
            case.code,
            failing.stderr
        );
        if case.warning {
            let mut sets = case.sets.to_vec();
            sets.push("--deny-warnings");
            let strict = validate_flags(bad.path(), plan, case.inventory, &sets);
            assert_eq!(strict.code, 1, "{}: --deny-warnings must fail", case.code);
        } else {
            assert_eq!(
                failing.code, 1,
                "{}: errors make the plan invalid",
                case.code
            );
        }
        let passing = validate(good.path(), good_plan, HA3, &[]);
        assert!(
            !passing.stderr.contains(&format!("[{}]", case.code)),
            "{}: the passing input reports it:\n{}",
            case.code,
            passing.stderr
        );
        assert_eq!(
            passing.code, 0,
            "{}: passing input invalid:\n{}",
            case.code, passing.stderr
        );
        let name = format!("{}_{level}", case.code);
        insta::assert_snapshot!(name, failing.stderr);
    }
}

#[test]
fn every_rule_has_a_case() {
    for (code, _) in RULES {
        assert!(
            CASES.iter().any(|c| c.code == *code),
            "lint `{code}` has no failing/passing case"
        );
    }
}

/// The bundled quorum plan sets --force-new-cluster in a manifest; without the barrier on
/// every member's etcd being gone, the same lint refuses it.
#[test]
fn force_new_cluster_in_a_manifest_needs_every_other_member_gone() {
    let plan = "plans/etcd-quorum-recovery.yaml";
    let good = workspace(&[]);
    let ok = validate(good.path(), plan, HA3, &["survivor=cp1"]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    let bad = workspace(&[(
        plan,
        "    needs: [etcd-gone]\n",
        "    needs: [survivor-has-data]\n",
    )]);
    let r = validate(bad.path(), plan, HA3, &["survivor=cp1"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("error[force-new-cluster-unguarded]: force-flag uses --force-new-cluster while etcd may still run on cp2, cp3"),
        "{}",
        r.stderr
    );
}
