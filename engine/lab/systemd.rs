//! A lab host run by real systemd (Debian's, PID 1 of its own PID, mount, UTS, IPC and
//! cgroup namespaces), for what only systemd can prove: timers that fire, units that start
//! and stop, the journal. Its root is an overlay of this machine's `/` whose changes live in
//! memory and vanish at stop; the directories the caller names are bind-mounted through, so
//! what it writes there is seen outside. It shares this machine's network (it stands for the
//! operator's backup host, which reaches the lab's nodes and local services as this one does).
//!
//! `SystemdHost::boot` starts `runbook lab systemd-init DIR` under `unshare` in a cgroup2
//! subtree of its own (systemd manages only that); `systemd_init` builds the root, pivots
//! into it and execs systemd.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::LabError;
use super::deps::{STANDARD_PATH, program};
use super::state::NodeState;

/// Units of this machine that must not start in the host: they are this machine's own
/// services (its etcd, sshd, database) or would touch packages and disks.
const MASKED: &[&str] = &[
    "etcd.service",
    "ssh.service",
    "ssh.socket",
    "postgresql.service",
    "getty@tty1.service",
    "systemd-timesyncd.service",
    "systemd-pstore.service",
    "e2scrub_reap.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
    "man-db.timer",
];

/// The variable systemd-init leaves in the environment of a lab node's systemd: the node's
/// directory, how `lab down` and `lab status` tell that systemd from a reused pid.
pub const NODE_ENV: &str = "RUNBOOK_LAB_NODE";

/// Units a lab node masks besides MASKED: it has no terminal for a getty (booting
/// multi-user.target, systemd's generator would start one on its console), and its network
/// is the lab's (net.rs), set up from outside: nothing inside may reconfigure its eth0.
const NODE_MASKED: &[&str] = &[
    "getty.target",
    "console-getty.service",
    "networking.service",
    "systemd-networkd.service",
    "NetworkManager.service",
];

/// What `systemd-init` needs, written by `boot` (or `spawn_node`) into `<dir>/systemd.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    name: String,
    /// Paths of this machine bind-mounted at the same place inside, writable.
    binds: Vec<PathBuf>,
    /// A lab node's own mounts, files and units (kubespray.rs); None for a plain host.
    #[serde(default)]
    node: Option<NodeRoot>,
}

/// What makes a systemd host a lab node: written into its root before systemd starts.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRoot {
    /// (source, target) bind mounts made at `target` on this machine's tree, in the host's
    /// mount namespace only, before the root is built: what the node's own /root must show.
    pub prepare: Vec<(String, String)>,
    /// Bind mounts into the root, in order.
    pub mounts: Vec<NodeMount>,
    pub files: Vec<NodeFile>,
    /// (path, target) symbolic links made in the root.
    pub symlinks: Vec<(String, String)>,
    /// Units of MASKED that the node runs itself (its etcd.service, its ssh.service).
    pub own_units: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeMount {
    /// A path of this machine.
    pub source: String,
    /// Where it appears inside the node.
    pub target: String,
    /// With the mounts below it (`--rbind`).
    pub recursive: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFile {
    pub path: String,
    pub content: String,
    pub mode: u32,
}

/// A running host; stopped (systemd powers off, its cgroup is removed) when dropped.
pub struct SystemdHost {
    pub name: String,
    /// systemd's pid, as this machine sees it.
    pid: i32,
    outer: Child,
    cgroup: PathBuf,
}

impl SystemdHost {
    /// Boots a host named `name` (its hostname), with `dir` for its own files (created) and
    /// `binds` shared with it; returns once `systemctl is-system-running` says running.
    pub fn boot(
        exe: &Path,
        name: &str,
        dir: &Path,
        binds: &[PathBuf],
    ) -> Result<SystemdHost, LabError> {
        if !runbook_shared::is_label(name) {
            return Err(LabError::usage(
                format!("invalid host name {name:?}"),
                "a host name is an RFC 1123 label",
                None,
            ));
        }
        if program("systemd").is_relative() && !Path::new("/lib/systemd/systemd").exists() {
            return Err(LabError::usage(
                "systemd is not installed",
                "/lib/systemd/systemd is missing",
                Some("apt-get install systemd"),
            ));
        }
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let config = Config {
            name: name.to_string(),
            binds: binds.to_vec(),
            node: None,
        };
        let text = serde_json::to_string_pretty(&config).context("cannot encode systemd.json")?;
        std::fs::write(dir.join("systemd.json"), text)
            .with_context(|| format!("cannot write {}", dir.join("systemd.json").display()))?;
        let cgroup = delegated_cgroup(name)?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("console.log"))
            .with_context(|| format!("cannot open {}", dir.join("console.log").display()))?;
        let outer = spawn_systemd(exe, dir, None, &cgroup, log)?;
        let mut host = SystemdHost {
            name: name.to_string(),
            pid: 0,
            outer,
            cgroup,
        };
        host.pid = host.find_systemd(dir)?;
        host.wait_running(dir)?;
        Ok(host)
    }

    /// systemd's pid: the child `unshare --fork` made, once it has exec'd systemd.
    fn find_systemd(&mut self, dir: &Path) -> anyhow::Result<i32> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let children =
                std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.outer.id()))
                    .unwrap_or_default();
            for pid in children
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if comm.trim() == "systemd" {
                    return Ok(pid);
                }
            }
            if let Ok(Some(status)) = self.outer.try_wait() {
                bail!(
                    "host {} stopped before systemd ran ({status}): {}",
                    self.name,
                    console_tail(dir)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "host {} did not reach systemd in 20 s: {}",
                    self.name,
                    console_tail(dir)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_running(&self, dir: &Path) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Ok(out) = self.exec(&["systemctl", "is-system-running"]) {
                last = String::from_utf8_lossy(&out.stdout).trim().to_string();
                if last == "running" || last == "degraded" {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(anyhow!(
            "host {}'s systemd is {last:?} after 60 s: {}",
            self.name,
            console_tail(dir)
        ))
    }

    /// Runs a command in the host (all its namespaces).
    pub fn exec(&self, args: &[&str]) -> std::io::Result<Output> {
        Command::new(program("nsenter"))
            .args(["-t", &self.pid.to_string(), "-a"])
            .args(args)
            .env_clear()
            .env("PATH", STANDARD_PATH)
            .stdin(Stdio::null())
            .output()
    }

    /// Runs a shell script in the host; its stdout, or an error with what it printed.
    pub fn sh(&self, script: &str) -> anyhow::Result<String> {
        let out = self
            .exec(&["sh", "-c", script])
            .with_context(|| format!("cannot enter host {}", self.name))?;
        if !out.status.success() {
            bail!(
                "`{script}` failed in host {} ({}): {}",
                self.name,
                out.status,
                super::output_summary(&out)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Powers systemd off (SIGRTMIN+4, as `systemctl poweroff` does in a container), kills
    /// what is left after a grace period, and removes the host's cgroup.
    pub fn stop(&mut self) {
        if let Ok(None) = self.outer.try_wait() {
            // SIGRTMIN+4 has no name in nix: its number, from libc's SIGRTMIN.
            let poweroff = nix::libc::SIGRTMIN() + 4;
            // SAFETY: kill(2) with a pid and a signal number; no memory is involved.
            unsafe {
                nix::libc::kill(self.pid, poweroff);
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.outer.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if let Ok(None) = self.outer.try_wait() {
                // PID 1 killed ends every process of its PID namespace.
                let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
                let _ = self.outer.wait();
            }
        }
        remove_cgroup(&self.cgroup);
    }
}

impl Drop for SystemdHost {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts lab node `n` run by systemd, detached like a static-pod node (node.rs): its own
/// session, in its network namespace, under `unshare` (PID, mount, UTS, IPC and cgroup
/// namespaces) in a cgroup of its own, stdio to logs/init.log. The pid to record is
/// systemd's, found by `node::find_init_pid`.
pub fn spawn_node(
    exe: &Path,
    lab: &str,
    n: &NodeState,
    root: NodeRoot,
) -> anyhow::Result<super::node::Starting> {
    let dir = Path::new(&n.dir);
    let config = Config {
        name: n.name.clone(),
        binds: Vec::new(),
        node: Some(root),
    };
    let text = serde_json::to_string_pretty(&config).context("cannot encode systemd.json")?;
    super::node::write_file(&dir.join("systemd.json"), &(text + "\n"), 0o644)?;
    let cgroup = delegated_cgroup(&node_cgroup_name(lab, &n.name))?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("logs/init.log"))
        .with_context(|| format!("cannot open {}", dir.join("logs/init.log").display()))?;
    let child = spawn_systemd(exe, dir, Some(&n.netns), &cgroup, log)
        .with_context(|| format!("cannot start node {}", n.name))?;
    Ok(super::node::Starting { child })
}

/// Starts `runbook lab systemd-init DIR` in its own session under `unshare` (PID, mount,
/// UTS, IPC and cgroup namespaces), first inside network namespace `netns` when one is
/// given (a lab node; a SystemdHost shares this machine's network), with stdio to `log`.
/// It enters `cgroup` before unshare makes that the cgroup namespace's root: systemd then
/// manages that subtree and nothing above it.
fn spawn_systemd(
    exe: &Path,
    dir: &Path,
    netns: Option<&str>,
    cgroup: &Path,
    log: std::fs::File,
) -> anyhow::Result<Child> {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new(program("ip"));
            c.args(["netns", "exec", ns]).arg(program("unshare"));
            c
        }
        None => Command::new(program("unshare")),
    };
    cmd.args([
        "--pid",
        "--mount",
        "--uts",
        "--ipc",
        "--cgroup",
        "--fork",
        "--kill-child",
    ])
    .arg(exe)
    .args(["lab", "systemd-init"])
    .arg(dir)
    .env_clear()
    .env("PATH", STANDARD_PATH)
    .current_dir("/")
    .stdin(Stdio::null())
    .stdout(log.try_clone().context("cannot duplicate the log handle")?)
    .stderr(log);
    // Opened here, written in the child, where only async-signal-safe calls may run.
    let procs = OpenOptions::new()
        .write(true)
        .open(cgroup.join("cgroup.procs"))
        .with_context(|| format!("cannot open {}", cgroup.join("cgroup.procs").display()))?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&procs);
    // SAFETY: between fork and exec only setsid(2), write(2) and close_range(2), all
    // async-signal-safe, on a descriptor that stays open (`procs` lives until after spawn).
    // As for a static-pod node, descriptors the starter holds (a test runner's lock) are
    // marked close-on-exec, but not this one before it is written.
    unsafe {
        cmd.pre_exec(move || {
            if nix::libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if nix::libc::write(fd, b"0\n".as_ptr().cast(), 2) != 2 {
                return Err(std::io::Error::last_os_error());
            }
            super::node::cloexec_inherited();
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start `{}`", super::describe(&cmd)))?;
    drop(procs);
    Ok(child)
}

/// `node.<lab>.<node>` (in `runbook-lab-...`): lab and host names hold no dot, so a lab's
/// node cgroups are found by prefix and never taken for a SystemdHost's.
fn node_cgroup_name(lab: &str, node: &str) -> String {
    format!("node.{lab}.{node}")
}

/// Asks a node's systemd to power off (SIGRTMIN+4, what `systemctl poweroff` sends in a
/// container): it stops every unit, etcd and kubelet's pods included, then exits.
pub fn poweroff(pid: i32) {
    // SIGRTMIN+4 has no name in nix: its number, from libc's SIGRTMIN.
    let signal = nix::libc::SIGRTMIN() + 4;
    // SAFETY: kill(2) with a pid and a signal number; no memory is involved.
    unsafe {
        nix::libc::kill(pid, signal);
    }
}

/// Removes the cgroups of a lab's nodes (once their processes are gone); whether any was there.
pub fn remove_node_cgroups(lab: &str) -> bool {
    let Ok(base) = cgroup_base() else {
        return false;
    };
    let prefix = format!("runbook-lab-{}", node_cgroup_name(lab, ""));
    let mut found = false;
    if let Ok(entries) = std::fs::read_dir(&base) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                found = true;
                remove_cgroup(&e.path());
            }
        }
    }
    found
}

fn console_tail(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("console.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// A fresh cgroup2 directory for the host: under the unified hierarchy (`/sys/fs/cgroup`,
/// or `/sys/fs/cgroup/unified` on a hybrid machine).
fn delegated_cgroup(name: &str) -> anyhow::Result<PathBuf> {
    let dir = cgroup_base()?.join(format!("runbook-lab-{name}"));
    remove_cgroup(&dir);
    std::fs::create_dir(&dir)
        .with_context(|| format!("cannot create the cgroup {}", dir.display()))?;
    Ok(dir)
}

fn cgroup_base() -> anyhow::Result<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
        })
        .min_by_key(|p| p.as_os_str().len())
        .ok_or_else(|| anyhow!("no cgroup2 hierarchy is mounted: systemd needs one"))
}

/// Removes a cgroup and the ones systemd made under it, deepest first (a cgroup is removed
/// with rmdir, and only when empty).
fn remove_cgroup(dir: &Path) {
    fn walk(d: &Path) {
        if let Ok(entries) = std::fs::read_dir(d) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(d);
    }
    walk(dir);
}

fn mount(args: &[&str]) -> anyhow::Result<()> {
    super::run(
        Command::new(program("mount"))
            .args(args)
            .env("PATH", STANDARD_PATH),
    )
    .map(|_| ())
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// `runbook lab systemd-init DIR`: PID 1 of a new host until it execs systemd. Returns only
/// on a failure.
pub fn systemd_init(dir: &Path) -> Result<(), LabError> {
    if nix::unistd::getpid().as_raw() != 1 {
        return Err(LabError::usage(
            "`runbook lab systemd-init` is the first process of a systemd lab host",
            "it is not PID 1 of a PID namespace here, and would mount over this machine's /",
            Some("it is started by the lab (SystemdHost::boot)"),
        ));
    }
    let text = std::fs::read_to_string(dir.join("systemd.json"))
        .with_context(|| format!("cannot read {}", dir.join("systemd.json").display()))?;
    let config: Config = serde_json::from_str(&text).context("systemd.json is not valid")?;
    build_root(dir, &config)?;
    let systemd = ["/lib/systemd/systemd", "/usr/lib/systemd/systemd"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("/lib/systemd/systemd");
    let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid").unwrap_or_default();
    let mut cmd = Command::new(systemd);
    cmd.env_clear();
    if config.node.is_some() {
        // A node boots as a server does, into multi-user.target, where its units are enabled.
        cmd.args(["--system", "--unit=multi-user.target", "--show-status=no"])
            .env(NODE_ENV, dir);
    } else {
        cmd.args(["--system", "--unit=lab.target", "--show-status=no"]);
    }
    let err = cmd
        // systemd's container interface: it is in a container and sets itself up for one.
        .env("container", "runbook-lab")
        .env("container_uuid", uuid.trim())
        .env("PATH", STANDARD_PATH)
        .env("TERM", "dumb")
        .exec();
    Err(anyhow!("cannot exec {systemd}: {err}").into())
}

/// The host's root at `<dir>/root` (in this mount namespace only), then `pivot_root` into it.
fn build_root(dir: &Path, config: &Config) -> anyhow::Result<()> {
    mount(&["--make-rprivate", "/"])?;
    if let Some(node) = &config.node {
        for (source, target) in &node.prepare {
            mount(&["--rbind", source, target])?;
        }
    }
    let rt = dir.join("rt");
    std::fs::create_dir_all(&rt)?;
    // Upper and work directories in memory: nothing the host writes to its root persists.
    mount(&["-t", "tmpfs", "-o", "mode=755", "runbook-lab", path(&rt)])?;
    for d in ["upper", "work", "root"] {
        std::fs::create_dir(rt.join(d))?;
    }
    let r = rt.join("root");
    let overlay = format!(
        "lowerdir=/,upperdir={},workdir={}",
        path(&rt.join("upper")),
        path(&rt.join("work"))
    );
    mount(&["-t", "overlay", "overlay", "-o", &overlay, path(&r)])?;
    let at = |p: &str| r.join(p.trim_start_matches('/'));
    mount(&["-t", "proc", "proc", path(&at("/proc"))])?;
    // Kernel settings read-only, as container managers do (this kernel's, shared); only the
    // network ones are the namespace's own.
    mount(&["--bind", path(&at("/proc/sys")), path(&at("/proc/sys"))])?;
    mount(&["-o", "remount,bind,ro", path(&at("/proc/sys"))])?;
    mount(&[
        "-t",
        "sysfs",
        "-o",
        "ro,nosuid,nodev,noexec",
        "sysfs",
        path(&at("/sys")),
    ])?;
    // The cgroup namespace's root: the subtree `boot` made for this host.
    mount(&[
        "-t",
        "cgroup2",
        "-o",
        "nosuid,nodev,noexec",
        "cgroup2",
        path(&at("/sys/fs/cgroup")),
    ])?;
    build_dev(dir, &at("/dev"))?;
    mount(&[
        "-t",
        "tmpfs",
        "-o",
        "mode=755,nosuid,nodev",
        "tmpfs",
        path(&at("/run")),
    ])?;
    for b in &config.binds {
        let inside = at(path(b));
        std::fs::create_dir_all(&inside)?;
        mount(&["--rbind", path(b), path(&inside)])?;
    }
    if let Some(node) = &config.node {
        for m in &node.mounts {
            let inside = at(&m.target);
            // Mount points are made in the overlay (in memory): never on this machine,
            // where another lab may have mounted over them.
            if Path::new(&m.source).is_dir() {
                std::fs::create_dir_all(&inside)?;
            } else if !inside.exists() {
                if let Some(parent) = inside.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(&inside, "")?;
            }
            let how = if m.recursive { "--rbind" } else { "--bind" };
            mount(&[how, &m.source, path(&inside)])
                .with_context(|| format!("cannot mount {} at {}", m.source, m.target))?;
        }
    }
    // Its own identity, and this machine's services masked (see MASKED).
    let etc = at("/etc");
    let _ = std::fs::remove_file(at("/var/lib/dbus/machine-id"));
    std::fs::write(etc.join("machine-id"), "")?;
    std::fs::write(etc.join("hostname"), format!("{}\n", config.name))?;
    let units = etc.join("systemd/system");
    std::fs::create_dir_all(&units)?;
    let own: &[String] = config.node.as_ref().map_or(&[], |n| &n.own_units);
    let node_masked = if config.node.is_some() {
        NODE_MASKED
    } else {
        &[]
    };
    for u in MASKED.iter().chain(node_masked) {
        if own.iter().any(|o| o == u) {
            continue;
        }
        let link = units.join(u);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/dev/null", &link)?;
    }
    if let Some(node) = &config.node {
        for f in &node.files {
            let inside = at(&f.path);
            if let Some(parent) = inside.parent() {
                std::fs::create_dir_all(parent)?;
            }
            // Replaced, not written through: it may be a link (a mask to /dev/null).
            let _ = std::fs::remove_file(&inside);
            super::node::write_file(&inside, &f.content, f.mode)?;
        }
        for (link, target) in &node.symlinks {
            let inside = at(link);
            if let Some(parent) = inside.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let _ = std::fs::remove_file(&inside);
            std::os::unix::fs::symlink(target, &inside)
                .with_context(|| format!("cannot link {link} to {target}"))?;
        }
    }
    // systemd empties /tmp at boot (tmpfiles.d's `D /tmp`): in the overlay that would hide
    // this machine's /tmp (a binary or a test's files there); create it, never clean it.
    let tmpfiles = etc.join("tmpfiles.d");
    std::fs::create_dir_all(&tmpfiles)?;
    std::fs::write(tmpfiles.join("tmp.conf"), "d /tmp 1777 root root -\n")?;
    std::fs::write(
        units.join("lab.target"),
        "[Unit]\nDescription=runbook lab host\nRequires=basic.target\nAfter=basic.target\nAllowIsolate=yes\n",
    )?;
    let old = r.join("oldroot");
    std::fs::create_dir_all(&old)?;
    nix::unistd::pivot_root(&r, &old).context("pivot_root")?;
    std::env::set_current_dir("/")?;
    nix::mount::umount2("/oldroot", nix::mount::MntFlags::MNT_DETACH).context("umount /oldroot")?;
    let _ = std::fs::remove_dir("/oldroot");
    Ok(())
}

/// A private /dev: the harmless devices bound from this machine's, its own ptys and shm.
fn build_dev(dir: &Path, dev: &Path) -> anyhow::Result<()> {
    mount(&["-t", "tmpfs", "-o", "mode=755,nosuid", "tmpfs", path(dev)])?;
    for d in ["null", "zero", "full", "random", "urandom", "tty"] {
        std::fs::write(dev.join(d), "")?;
        mount(&["--bind", &format!("/dev/{d}"), path(&dev.join(d))])?;
    }
    for d in ["pts", "shm", "mqueue"] {
        std::fs::create_dir(dev.join(d))?;
    }
    mount(&[
        "-t",
        "devpts",
        "-o",
        "newinstance,ptmxmode=0666,mode=620",
        "devpts",
        path(&dev.join("pts")),
    ])?;
    std::os::unix::fs::symlink("pts/ptmx", dev.join("ptmx"))?;
    mount(&[
        "-t",
        "tmpfs",
        "-o",
        "mode=1777,nosuid,nodev",
        "tmpfs",
        path(&dev.join("shm")),
    ])?;
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(target, dev.join(name))?;
    }
    // PID 1's console is a file the lab can read.
    let console = dir.join("pid1-console.log");
    std::fs::write(&console, "")?;
    std::fs::write(dev.join("console"), "")?;
    mount(&["--bind", path(&console), path(&dev.join("console"))])?;
    Ok(())
}
