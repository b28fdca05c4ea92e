//! A corpus of broken plans and inventories: each is refused with exit 1 and located
//! diagnostics (snapshotted), never a panic, and every error of a file is reported at once.

mod common;

use common::{assert_no_panic, root, runbook};

#[test]
fn broken_inputs_get_located_errors() {
    let dir = root().join("tests/fixtures/broken");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 10);
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let rel = format!("tests/fixtures/broken/{name}");
        let args: Vec<&str> = if name.ends_with(".inventory.yaml") {
            vec![
                "validate",
                "plans/etcd-restore-ha.yaml",
                "-i",
                &rel,
                "--set",
                "snapshot=/s.db",
            ]
        } else {
            vec!["validate", &rel, "-i", "examples/kubeadm-ha-3.yaml"]
        };
        let r = runbook(&args);
        assert_no_panic(&r);
        assert_eq!(r.code, 1, "{name} must be invalid:\n{}", r.stderr);
        assert!(
            r.stderr.contains(&format!("--> {rel}:")),
            "{name}: no file:line:column in\n{}",
            r.stderr
        );
        let snapshot_name = name.trim_end_matches(".yaml").replace('.', "_");
        insta::assert_snapshot!(snapshot_name, r.stderr);
    }
}

#[test]
fn all_errors_are_collected_not_just_the_first() {
    let r = runbook(&[
        "validate",
        "tests/fixtures/broken/unknown-refs.plan.yaml",
        "-i",
        "examples/kubeadm-ha-3.yaml",
        "--set",
        "snapshot=/s.db",
    ]);
    for code in [
        "unknown-action",
        "unknown-role",
        "unknown-step",
        "unknown-node",
        "duplicate-step-id",
    ] {
        assert!(
            r.stderr.contains(&format!("error[{code}]")),
            "missing {code} in\n{}",
            r.stderr
        );
    }
    let r = runbook(&[
        "validate",
        "plans/etcd-restore-ha.yaml",
        "-i",
        "tests/fixtures/broken/hostile.inventory.yaml",
        "--set",
        "snapshot=/s.db",
    ]);
    for code in [
        "invalid-name",
        "invalid-address",
        "invalid-path",
        "invalid-owner",
        "invalid-scheme",
        "invalid-version",
        "duplicate-node",
    ] {
        assert!(
            r.stderr.contains(&format!("error[{code}]")),
            "missing {code} in\n{}",
            r.stderr
        );
    }
}

#[test]
fn cycles_print_their_path() {
    let r = runbook(&[
        "validate",
        "tests/fixtures/broken/cycle.plan.yaml",
        "-i",
        "examples/kubeadm-ha-3.yaml",
    ]);
    assert!(
        r.stderr.contains("stop -> restore -> copy -> stop"),
        "{}",
        r.stderr
    );
}

/// Input that is not UTF-8 is located to its first bad byte: file:line:column and offset.
#[test]
fn bytes_that_are_not_utf8_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // An inventory with a Latin-1 "é" in a comment on line 2.
    let inv = std::fs::read(root().join("examples/kubeadm-ha-3.yaml")).unwrap();
    let mut bad = b"# r\xe9sum\xe9\n".to_vec();
    bad.extend_from_slice(&inv);
    let inv_path = d.join("inv.yaml");
    std::fs::write(&inv_path, &bad).unwrap();
    let inv_path = inv_path.to_str().unwrap();
    let r = runbook(&[
        "validate",
        "plans/etcd-restore-ha.yaml",
        "-i",
        inv_path,
        "--set",
        "snapshot=/s.db",
    ]);
    assert_no_panic(&r);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "error[not-utf8]: not UTF-8 text: byte 0xe9 at byte offset 3 cannot start or continue a UTF-8 character\n --> {inv_path}:1:4"
        )),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("inventory files are UTF-8 text"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("check the path"), "{}", r.stderr);

    // A --set-file value: a usage error, located the same way.
    let value = d.join("value");
    std::fs::write(&value, b"/backups/\n\x80.db\n").unwrap();
    let value = value.to_str().unwrap();
    let r = runbook(&[
        "validate",
        "plans/etcd-restore-ha.yaml",
        "-i",
        "examples/kubeadm-ha-3.yaml",
        "--set-file",
        &format!("snapshot={value}"),
    ]);
    assert_no_panic(&r);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "  Caused by: {value}:2:1: not UTF-8 text: byte 0x80 at byte offset 10 cannot start or continue a UTF-8 character"
        )),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("  hint: a parameter value is UTF-8 text"),
        "{}",
        r.stderr
    );
}
