//! Hostile values from plans, parameters and inventories never run as shell: every rendered
//! command of a compiled plan is executed by a real `sh` against stub tools that only log
//! their arguments, and nothing injected may run.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::{assert_no_panic, root, runbook_in, runbook_within};

/// Payloads that would each run `touch` (or worse) if they reached a shell unquoted.
const PAYLOADS: &[&str] = &[
    "$(touch PWNED-dollar)",
    "`touch PWNED-backtick`",
    "x; touch PWNED-semicolon",
    "x' ; touch PWNED-quote ; '",
    "x\" ; touch PWNED-dquote ; \"",
    "x && touch PWNED-and",
    "x | touch PWNED-pipe",
];

const STUBS: &[&str] = &[
    "mkdir",
    "rm",
    "mv",
    "find",
    "chown",
    "etcdutl",
    "etcdctl",
    "sha256sum",
    "cut",
    "stat",
    "head",
    "tail",
    "od",
    "tr",
    "date",
    "curl",
    "touch",
    "id",
    "reboot",
    "wc",
    "grep",
    "awk",
    "sort",
    "sleep",
    "printf_ext",
];

fn stub_dir(dir: &Path) -> std::path::PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = dir.join("calls.log");
    for name in STUBS {
        let p = bin.join(name);
        std::fs::write(
            &p,
            format!(
                "#!/bin/sh\necho \"{name} $*\" >> '{}'\nexit 0\n",
                log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // `pgrep` finds nothing, so wait loops end at once.
    std::fs::write(bin.join("pgrep"), "#!/bin/sh\nexit 1\n").unwrap();
    std::fs::set_permissions(bin.join("pgrep"), std::fs::Permissions::from_mode(0o755)).unwrap();
    // `timeout N cmd...` runs the command, so quoted inner scripts are executed too.
    std::fs::write(bin.join("timeout"), "#!/bin/sh\nshift\nexec \"$@\"\n").unwrap();
    std::fs::set_permissions(bin.join("timeout"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("/bin/sh", bin.join("sh")).unwrap();
    bin
}

fn run_commands(dir: &Path, plan_json: &str) -> usize {
    let bin = stub_dir(dir);
    let v: serde_json::Value = serde_json::from_str(plan_json).unwrap();
    let mut ran = 0;
    for step in v["steps"].as_array().unwrap() {
        for cmd in step["commands"].as_array().unwrap() {
            let cmd = cmd.as_str().unwrap();
            std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(cmd)
                .current_dir(dir)
                .env_clear()
                .env("PATH", &bin)
                .env("RUNBOOK_SOURCE_SHA256", "0")
                .output()
                .unwrap();
            ran += 1;
        }
    }
    ran
}

fn assert_nothing_injected(dir: &Path) {
    let log = std::fs::read_to_string(dir.join("calls.log")).unwrap_or_default();
    for line in log.lines() {
        assert!(
            !line.starts_with("touch ") && !line.starts_with("reboot"),
            "an injected command ran: {line}\n{log}"
        );
    }
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            !name.starts_with("PWNED"),
            "an injected command created {name}"
        );
    }
}

#[test]
fn hostile_parameters_and_paths_are_quoted_in_every_command() {
    let mut executed = 0;
    for payload in PAYLOADS {
        let dir = tempfile::tempdir().unwrap();
        // The inventory's data dir, the snapshot path, the staging and parking dirs all carry it.
        let inv = std::fs::read_to_string(root().join("examples/kubeadm-ha-3.yaml"))
            .unwrap()
            .replace(
                "data_dir: /var/lib/etcd",
                &format!(
                    "data_dir: {}",
                    serde_json::to_string(&format!("/var/lib/etcd/{payload}")).unwrap()
                ),
            );
        std::fs::write(dir.path().join("inv.yaml"), inv).unwrap();
        let snapshot = format!("snapshot=/backups/{payload}.db");
        let staging = format!("staging_dir=/var/tmp/{payload}");
        let parking = format!("parking_dir=/etc/parked/{payload}");
        let readyz = "apiserver_readyz=https://127.0.0.1:6443/readyz?$(reboot)`reboot`".to_string();
        let plan = root().join("plans/etcd-restore-ha.yaml");
        let r = runbook_in(
            dir.path(),
            &[
                "plan",
                plan.to_str().unwrap(),
                "-i",
                "inv.yaml",
                "-o",
                "json",
                "--set",
                &snapshot,
                "--set",
                &staging,
                "--set",
                &parking,
                "--set",
                &readyz,
            ],
        );
        assert_no_panic(&r);
        if r.code != 0 {
            // Refusing is fine too, as long as it is a clear, located error.
            assert_eq!(r.code, 1);
            assert!(r.stderr.contains("error["), "{}", r.stderr);
            continue;
        }
        assert!(
            r.stdout.contains("PWNED"),
            "the payload should appear (quoted) in the plan"
        );
        let ran = run_commands(dir.path(), &r.stdout);
        assert!(ran > 30, "only {ran} commands ran");
        assert_nothing_injected(dir.path());
        executed += 1;
    }
    assert!(
        executed >= 5,
        "most payloads are valid paths and must compile, quoted ({executed})"
    );
}

#[test]
fn hostile_values_in_run_templates_stay_one_literal_word() {
    let dir = tempfile::tempdir().unwrap();
    let plan = "name: echo
params:
  value: { required: true }
steps:
  - id: echo
    on: cp1
    run: printf '%s' {{ params.value }} > out.txt
";
    std::fs::write(dir.path().join("plan.yaml"), plan).unwrap();
    let inv = root().join("examples/kubeadm-ha-3.yaml");
    for payload in PAYLOADS.iter().chain(&["multi\nline", "", "*", "~root"]) {
        let r = runbook_in(
            dir.path(),
            &[
                "plan",
                "plan.yaml",
                "-i",
                inv.to_str().unwrap(),
                "-o",
                "json",
                "--set",
                &format!("value={payload}"),
            ],
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        run_commands(dir.path(), &r.stdout);
        let out = std::fs::read_to_string(dir.path().join("out.txt")).unwrap();
        assert_eq!(&out, payload);
        assert_nothing_injected(dir.path());
        let _ = std::fs::remove_dir_all(dir.path().join("bin"));
    }
}

#[test]
fn raw_filter_is_the_only_way_to_unquote() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("plan.yaml"),
        "name: raw\nparams:\n  glob: { default: '*.db' }\nsteps:\n  - { id: ls, on: cp1, run: 'ls {{ params.glob }} {{ params.glob | raw }}' }\n",
    )
    .unwrap();
    let inv = root().join("examples/kubeadm-ha-3.yaml");
    let r = runbook_in(
        dir.path(),
        &[
            "plan",
            "plan.yaml",
            "-i",
            inv.to_str().unwrap(),
            "-o",
            "json",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["steps"][0]["commands"][0], "ls '*.db' *.db");
}

/// `--set-file`, the plan and the inventory are read only from small regular files: a FIFO
/// would block forever, a device or a huge file would fill memory.
#[test]
fn inputs_that_are_not_small_regular_files_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let plan = root().join("plans/etcd-restore-ha.yaml");
    let plan = plan.to_str().unwrap();
    let inv = root().join("examples/kubeadm-ha-3.yaml");
    let inv = inv.to_str().unwrap();
    // Sparse: big on paper, nothing on disk.
    let big = d.join("big.bin");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(280 << 20)
        .unwrap();
    let fifo = d.join("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let (big, fifo) = (big.to_str().unwrap(), fifo.to_str().unwrap());
    let set_file = |value: &str| {
        runbook_within(
            d,
            &[
                "validate",
                plan,
                "-i",
                inv,
                "--set-file",
                &format!("snapshot={value}"),
            ],
            20,
        )
    };
    for (value, why) in [
        (big, "it is larger than 1 MiB: 293601280 bytes"),
        (fifo, "it is a FIFO (named pipe), not a regular file"),
        ("/dev/zero", "it is a character device, not a regular file"),
        (d.to_str().unwrap(), "it is a directory, not a regular file"),
    ] {
        let r = set_file(value).unwrap_or_else(|| panic!("--set-file {value} never finished"));
        assert_no_panic(&r);
        assert_eq!(r.code, 2, "--set-file {value}: {}", r.stderr);
        assert!(
            r.stderr.contains(&format!(
                "error: cannot read the value of parameter `snapshot` from {value} (--set-file snapshot={value})"
            )),
            "{}",
            r.stderr
        );
        assert!(r.stderr.contains(why), "{value}: {}", r.stderr);
        assert!(
            r.stderr.contains("  hint: --set-file NAME=PATH"),
            "{}",
            r.stderr
        );
    }
    // A value up to the limit is fine.
    let small = d.join("small");
    std::fs::write(&small, "/backups/etcd.db\n").unwrap();
    let r = set_file(small.to_str().unwrap()).unwrap();
    assert_eq!(r.code, 0, "{}", r.stderr);

    // The plan or the inventory as a FIFO, a device or a huge file.
    let big_doc = d.join("big.yaml");
    std::fs::File::create(&big_doc)
        .unwrap()
        .set_len(9 << 20)
        .unwrap();
    let big_doc = big_doc.to_str().unwrap();
    for (p, i, bad, why) in [
        (
            fifo,
            inv,
            fifo,
            "it is a FIFO (named pipe), not a regular file",
        ),
        (
            plan,
            fifo,
            fifo,
            "it is a FIFO (named pipe), not a regular file",
        ),
        (plan, "/dev/zero", "/dev/zero", "it is a character device"),
        (
            big_doc,
            inv,
            big_doc,
            "it is larger than 8 MiB: 9437184 bytes",
        ),
    ] {
        for cmd in ["validate", "plan"] {
            let r = runbook_within(d, &[cmd, p, "-i", i, "--set", "snapshot=/s.db"], 20)
                .unwrap_or_else(|| panic!("{cmd} {p} -i {i} never finished"));
            assert_no_panic(&r);
            assert_eq!(r.code, 2, "{cmd} {p} -i {i}: {}", r.stderr);
            assert!(
                r.stderr.contains(&format!("error: cannot read {bad}")),
                "{}",
                r.stderr
            );
            assert!(r.stderr.contains(why), "{}", r.stderr);
            assert!(r.stderr.contains("  hint: "), "{}", r.stderr);
        }
    }
    // apply reads the plan first to see whether it is a saved plan: that must not block either.
    let r = runbook_within(d, &["apply", fifo, "-i", inv, "--dry-run"], 20)
        .expect("apply of a FIFO never finished");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("FIFO"), "{}", r.stderr);
}

/// SSH control directories are private and fresh: a directory planted at a predictable path
/// (as another user, with files in it) is neither used nor emptied, and a recorded one that
/// is not ours is refused on resume.
#[test]
fn ssh_control_directories_are_private_and_planted_ones_are_left_alone() {
    // Port 1 refuses at once: a real run that stops at connecting.
    let dir = common::unreachable_scratch("ctl");
    let d = dir.path();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_runbook"))
            .args(args)
            .current_dir(d)
            .env("NO_COLOR", "1")
            .env("RUNBOOK_LOCK_DIR", d.join("locks"))
            .env_remove("XDG_RUNTIME_DIR")
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
    let r = run(&[
        "apply",
        "plan.yaml",
        "-i",
        "inv.yaml",
        "--run-dir",
        "run",
        "--yes",
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("unreachable n1"), "{}", r.stderr);
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("run/run.json")).unwrap()).unwrap();
    let salt = info["run_id"].as_str().unwrap().rsplit('-').next().unwrap();

    // Another user's directory, where a predictable name for this run would be.
    let nobody = 65534;
    let plant = |path: &Path| {
        let _ = std::fs::remove_dir_all(path);
        std::fs::create_dir_all(path.join(".ssh-connection-planted")).unwrap();
        std::fs::write(path.join("planted"), "mine").unwrap();
        std::fs::write(path.join(".ssh-connection-planted/master"), "mine").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
        for p in [
            path.to_path_buf(),
            path.join("planted"),
            path.join(".ssh-connection-planted"),
            path.join(".ssh-connection-planted/master"),
        ] {
            std::os::unix::fs::chown(&p, Some(nobody), Some(nobody)).unwrap();
        }
    };
    let untouched = |path: &Path| {
        let mut names: Vec<String> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [".ssh-connection-planted", "planted"], "{path:?}");
        assert!(path.join(".ssh-connection-planted/master").exists());
        assert_eq!(std::fs::metadata(path).unwrap().uid(), nobody);
    };
    let predictable = Path::new("/tmp").join(format!("runbook-{}-{salt}", nix_uid()));
    plant(&predictable);
    let r = run(&["resume", "run", "--yes"]);
    untouched(&predictable);
    std::fs::remove_dir_all(&predictable).unwrap();
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("unreachable n1"), "{}", r.stderr);

    // The directory of each process of the run is recorded, and gone once it exited.
    let recorded = std::fs::read_to_string(d.join("run/ssh-control-dirs")).unwrap();
    let dirs: Vec<&str> = recorded.lines().collect();
    assert_eq!(dirs.len(), 2, "{recorded}");
    for d in &dirs {
        assert!(d.starts_with("/tmp/runbook-apply-"), "{d}");
        assert!(!Path::new(d).exists(), "{d} was left behind");
    }
    let recorded = Path::new(dirs[1]);
    // Planted there, it is not ours: refused with a warning, nothing in it touched.
    plant(recorded);
    let r = run(&["resume", "run", "--yes"]);
    untouched(recorded);
    std::fs::remove_dir_all(recorded).unwrap();
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "warning: {} is not the private directory a runbook process of this user made",
            recorded.display()
        )),
        "{}",
        r.stderr
    );
}

fn nix_uid() -> u32 {
    std::fs::metadata("/proc/self").unwrap().uid()
}
