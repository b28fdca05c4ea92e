//! Snapshots in S3 against a real S3 API on loopback (moto's server): copies read back and
//! encrypted as asked, retention in a prefix, `snapshot status|list s3://`, a damaged object
//! refused, settings from the AWS profile files.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{Run, S3Server};

const FIXTURE: &str = "tests/fixtures/snapshots/etcd-3.6.db";

fn runbook(dir: &Path, env: &[(&str, String)], args: &[&str]) -> Run {
    let mut c = Command::new(env!("CARGO_BIN_EXE_runbook"));
    c.args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("RUNBOOK_LOCK_DIR", dir.join("locks"))
        .stdin(Stdio::null());
    for v in [
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ] {
        c.env_remove(v);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("runbook runs");
    let r = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    common::assert_no_panic(&r);
    r
}

/// A scratch directory with a saved snapshot `name` and its `.sha256`, as `snapshot save`
/// leaves them, and an inventory for local-only plans.
fn scratch(names: &[&str]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(common::root().join(FIXTURE)).unwrap();
    for name in names {
        std::fs::write(d.path().join(name), &bytes).unwrap();
        let sum = Command::new("sha256sum")
            .arg(name)
            .current_dir(d.path())
            .output()
            .unwrap();
        std::fs::write(d.path().join(format!("{name}.sha256")), sum.stdout).unwrap();
    }
    // A cluster of its own per scratch: tests running at once never share the local lock.
    let cluster: String = d
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_lowercase()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    std::fs::write(
        d.path().join("inventory.yaml"),
        format!("cluster: s3t{cluster}\netcd: {{ version: \"3.6.16\" }}\nnodes:\n  - {{ name: n1, address: 127.0.0.1, roles: [etcd] }}\n"),
    )
    .unwrap();
    d
}

fn apply(dir: &Path, env: &[(&str, String)], plan: &str, run: &str) -> Run {
    std::fs::write(dir.join("plan.yaml"), plan).unwrap();
    runbook(
        dir,
        env,
        &[
            "apply",
            "plan.yaml",
            "-i",
            "inventory.yaml",
            "--local",
            "--yes",
            "--run-dir",
            run,
        ],
    )
}

fn objects(s3: &S3Server) -> Vec<String> {
    let out = s3.python(
        "for o in s3.list_objects_v2(Bucket='backups').get('Contents', []): print(o['Key'])",
    );
    let mut v: Vec<String> = out.lines().map(str::to_string).collect();
    v.sort();
    v
}

#[test]
fn backups_go_to_s3_encrypted_read_back_and_pruned_there() {
    let s3 = S3Server::start();
    let env = s3.env();
    let names = ["etcd-s3t-1.db", "etcd-s3t-2.db", "etcd-s3t-3.db"];
    let d = scratch(&names);
    for (n, name) in names.iter().enumerate() {
        let plan = format!(
            "name: offsite\nsteps:\n  - id: copy\n    on: local\n    action: snapshot.copy\n    with: {{ source: {src}, to: s3://backups/etcd/, sse: AES256 }}\n  - id: prune\n    on: local\n    action: snapshot.prune\n    with: {{ dir: s3://backups/etcd, prefix: etcd-s3t-, keep: 2 }}\n    needs: [copy]\n    destructive: true\n    rollback: older copies are gone\n",
            src = d.path().join(name).display()
        );
        let r = apply(d.path(), &env, &plan, &format!("run{n}"));
        assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
        assert!(
            r.stderr.contains(&format!(
                "s3://backups/etcd/{name}: 20.03 KiB uploaded and read back"
            )),
            "{}",
            r.stderr
        );
        // S3 keeps modification times to the second: the next copy is strictly newer.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        if n == 2 {
            assert!(r.stderr.contains("removed etcd-s3t-1.db"), "{}", r.stderr);
        }
    }
    assert_eq!(
        objects(&s3),
        [
            "etcd/etcd-s3t-2.db",
            "etcd/etcd-s3t-2.db.sha256",
            "etcd/etcd-s3t-3.db",
            "etcd/etcd-s3t-3.db.sha256"
        ]
    );
    let sse = s3.python(
        "print(s3.head_object(Bucket='backups', Key='etcd/etcd-s3t-3.db')['ServerSideEncryption'])",
    );
    assert_eq!(sse.trim(), "AES256");

    // What is there, checked as `snapshot status` checks a file.
    let l = runbook(
        d.path(),
        &env,
        &["snapshot", "list", "s3://backups/etcd", "-o", "json"],
    );
    assert_eq!(l.code, 0, "{}", l.stderr);
    let listed: serde_json::Value = serde_json::from_str(&l.stdout).unwrap();
    let files: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["file"].as_str().unwrap())
        .collect();
    assert_eq!(files, ["etcd-s3t-3.db", "etcd-s3t-2.db"], "newest first");
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["check"] == "ok (trailer, .sha256)")
    );
    let st = runbook(
        d.path(),
        &env,
        &[
            "snapshot",
            "status",
            "s3://backups/etcd/etcd-s3t-3.db",
            "-o",
            "json",
        ],
    );
    assert_eq!(st.code, 0, "{}", st.stderr);
    assert!(
        st.stderr.contains("matches etcd-s3t-3.db.sha256"),
        "{}",
        st.stderr
    );
    let st: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    assert_eq!(st["sha256"], "ok");
    assert_eq!(st["revision"], 5);
}

#[test]
fn a_damaged_object_is_refused_before_anything_uses_it() {
    let s3 = S3Server::start();
    let env = s3.env();
    let d = scratch(&["etcd-s3t-1.db"]);
    let src = d.path().join("etcd-s3t-1.db");
    // The object's bytes change in storage; its .sha256 is the one written at backup time.
    let mut bytes = std::fs::read(&src).unwrap();
    bytes[9000] ^= 0x40;
    let bad = d.path().join("bad.db");
    std::fs::write(&bad, &bytes).unwrap();
    s3.python(&format!(
        "s3.upload_file('{}', 'backups', 'etcd/etcd-s3t-1.db')\ns3.upload_file('{}.sha256', 'backups', 'etcd/etcd-s3t-1.db.sha256')",
        bad.display(),
        src.display()
    ));
    let url = "s3://backups/etcd/etcd-s3t-1.db";
    let st = runbook(d.path(), &env, &["snapshot", "status", url]);
    assert_eq!(st.code, 1, "{}", st.stderr);
    assert!(
        st.stderr.contains("the object is damaged; refusing it"),
        "{}",
        st.stderr
    );

    // A restore plan's first step, given the S3 object.
    let plan = format!(
        "name: verify\nsteps:\n  - id: verify\n    on: local\n    action: snapshot.verify\n    with: {{ path: \"{url}\" }}\n"
    );
    let r = apply(d.path(), &env, &plan, "run");
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(
        format!("{}{}", r.stdout, r.stderr).contains("the object is damaged; refusing it"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );

    let l = runbook(d.path(), &env, &["snapshot", "list", "s3://backups/etcd"]);
    assert_eq!(l.code, 1, "{}", l.stdout);
    assert!(
        l.stdout.contains("MISMATCH") || l.stdout.contains("DIFFERS"),
        "{}",
        l.stdout
    );
    assert!(
        l.stderr
            .contains("1 of 1 snapshots in s3://backups/etcd do not check out"),
        "{}",
        l.stderr
    );

    // The same object intact is fetched, checked and verified.
    s3.python(&format!(
        "s3.upload_file('{}', 'backups', 'etcd/etcd-s3t-1.db')",
        src.display()
    ));
    let r = apply(d.path(), &env, &plan, "run2");
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("matches etcd-s3t-1.db.sha256"),
        "{}",
        r.stderr
    );
}

#[test]
fn settings_come_from_the_aws_profile_files_too() {
    let s3 = S3Server::start();
    let d = scratch(&["etcd-s3t-1.db"]);
    s3.python(&format!(
        "s3.upload_file('{0}', 'backups', 'p/etcd-s3t-1.db')\ns3.upload_file('{0}.sha256', 'backups', 'p/etcd-s3t-1.db.sha256')",
        d.path().join("etcd-s3t-1.db").display()
    ));
    let aws: PathBuf = d.path().join("aws");
    std::fs::create_dir(&aws).unwrap();
    std::fs::write(
        aws.join("config"),
        format!(
            "[default]\nregion = eu-west-1\n\n[profile lab]\nregion = us-east-1\ns3 =\n  endpoint_url = {}\n  addressing_style = path\n",
            s3.endpoint
        ),
    )
    .unwrap();
    std::fs::write(
        aws.join("credentials"),
        "[default]\naws_access_key_id = wrong\n[lab]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
    )
    .unwrap();
    let env = [
        ("AWS_PROFILE", "lab".to_string()),
        ("AWS_CONFIG_FILE", aws.join("config").display().to_string()),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            aws.join("credentials").display().to_string(),
        ),
    ];
    let l = runbook(d.path(), &env, &["snapshot", "list", "s3://backups/p"]);
    assert_eq!(l.code, 0, "{}\n{}", l.stdout, l.stderr);
    assert!(l.stdout.contains("etcd-s3t-1.db"), "{}", l.stdout);
}

#[test]
fn s3_destinations_are_checked_when_the_plan_is_read() {
    let d = scratch(&[]);
    let cases = [
        ("to: s3://Backups/etcd", "is not a bucket name"),
        (
            "to: s3://backups/etcd, sse: AES512",
            "is not a server-side encryption",
        ),
        (
            "to: /srv/copies, sse: AES256",
            "applies to S3 destinations only",
        ),
        (
            "to: s3://backups/etcd, sse_kms_key_id: k1",
            "without `sse: aws:kms`",
        ),
    ];
    for (with, want) in cases {
        std::fs::write(
            d.path().join("plan.yaml"),
            format!("name: t\nsteps:\n  - id: copy\n    on: local\n    action: snapshot.copy\n    with: {{ source: /srv/a.db, {with} }}\n"),
        )
        .unwrap();
        let r = runbook(
            d.path(),
            &[],
            &["validate", "plan.yaml", "-i", "inventory.yaml"],
        );
        assert_ne!(r.code, 0, "{with}");
        assert!(r.stderr.contains(want), "{with}: {}", r.stderr);
        assert!(r.stderr.contains("plan.yaml:6:"), "located: {}", r.stderr);
    }
}
