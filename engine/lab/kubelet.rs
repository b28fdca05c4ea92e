//! `runbook lab init`: PID 1 of a lab node — its mounts, sshd, and a kubelet stand-in for static pods.
//! (`runbook lab kubelet` is the stand-in alone, for a node whose init is systemd.)
//!
//! What it does, in order: bind-mounts the node's directories over /etc/kubernetes,
//! /var/lib/etcd, /var/lib/runbook and /root (the mount namespace is private, so the host
//! never sees them); starts sshd once (never restarted: tests kill it to make a host
//! unreachable); then, like kubelet with /etc/kubernetes/manifests, runs the command of every
//! `*.yaml` manifest,
//! restarts it a second after it exits while its manifest is there, stops it (SIGTERM to its
//! process group, SIGKILL after a grace period) when the manifest leaves, and restarts it
//! when the manifest changes. As PID 1 it reaps every child, orphans included, as soon as
//! SIGCHLD arrives, so an exited etcd never lingers as a zombie that `pgrep -x etcd` sees.
//!
//! Everything runs on one thread (a helper thread only turns signals into wake-ups): std's
//! `Command::spawn` waits for a child whose exec failed, which must not race with the reaper.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, anyhow};
use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal, kill, killpg};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::LabError;
use super::node::InitConfig;

/// How often the manifests directory is read when nothing else wakes the loop.
const TICK: Duration = Duration::from_millis(100);
/// Delay before a pod that exited on its own is started again.
const RESTART_DELAY: Duration = Duration::from_secs(1);
/// SIGTERM grace before SIGKILL, when a manifest leaves or changes: kubelet's default
/// terminationGracePeriodSeconds, which kubeadm's static pods do not change.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// `runbook lab init NODE_DIR`; returns only when asked to stop (SIGTERM) or on a setup failure.
pub fn init(node_dir: &Path) -> Result<(), LabError> {
    if nix::unistd::getpid().as_raw() != 1 {
        return Err(LabError::usage(
            "`runbook lab init` is the first process of a lab node",
            "it is not PID 1 of a PID namespace here, and would bind-mount over this host's /etc/kubernetes",
            Some("it is started by `runbook lab up`; use that"),
        ));
    }
    // `unshare --mount-proc` gives the node its own /proc (where this process is 1), which
    // implies its own mount namespace; a private `/` keeps the mounts from propagating.
    let own_proc = std::fs::read_link("/proc/self").is_ok_and(|p| p.as_os_str() == "1");
    if !own_proc || root_mount_is_shared() {
        return Err(LabError::usage(
            "`runbook lab init` needs its own, private mount namespace",
            "here the node's bind mounts would land on (or propagate to) the host",
            Some("it is started by `runbook lab up` under `unshare --propagation private`"),
        ));
    }
    let config = InitConfig::load(node_dir)?;
    log(&format!("node {}: starting (pid 1)", config.node));
    if let Err(e) = nix::unistd::sethostname(&config.node) {
        log(&format!("cannot set the hostname to {}: {e}", config.node));
    }
    for (source, target) in &config.mounts {
        super::run(
            Command::new(super::deps::program("mount"))
                .args(["--rbind", source, target])
                .env("PATH", super::deps::STANDARD_PATH),
        )
        .with_context(|| format!("cannot bind-mount {source} over {target}"))?;
    }
    let events = signal_events();
    let mut kubelet = Kubelet::new(config);
    kubelet.start_sshd()?;
    kubelet.run(events);
    Ok(())
}

/// `runbook lab kubelet NODE_DIR`: the kubelet stand-in alone, as kubelet.service of a node
/// run by systemd (which made the mounts and runs sshd). Returns when asked to stop
/// (SIGTERM), once every pod is stopped.
pub fn kubelet(node_dir: &Path) -> Result<(), LabError> {
    let config = InitConfig::load(node_dir)?;
    log(&format!(
        "node {}: kubelet stand-in (pid {})",
        config.node,
        std::process::id()
    ));
    let events = signal_events();
    Kubelet::new(config).run(events);
    Ok(())
}

/// Whether `/` is a shared mount (mountinfo's optional fields carry `shared:N`).
fn root_mount_is_shared() -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return true;
    };
    info.lines().any(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        // "id parent major:minor root mountpoint options [optional...] - fstype ..."
        fields.get(4) == Some(&"/")
            && fields
                .iter()
                .skip(6)
                .take_while(|f| **f != "-")
                .any(|f| f.starts_with("shared:"))
    })
}

fn log(message: &str) {
    eprintln!(
        "{} {message}",
        humantime::format_rfc3339_seconds(SystemTime::now())
    );
}

/// What wakes the loop besides the tick.
enum Event {
    Child,
    Terminate,
}

/// SIGCHLD, SIGTERM and SIGINT as events. They are blocked (children get the empty mask
/// back, see `unblock_signals_in_child`) and read from a signalfd on a helper thread; None if
/// that cannot be set up, and the loop then just ticks.
fn signal_events() -> Option<mpsc::Receiver<Event>> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGINT);
    if let Err(e) = mask.thread_block() {
        log(&format!("cannot block signals ({e}); polling instead"));
        return None;
    }
    let fd = match SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC) {
        Ok(fd) => fd,
        Err(e) => {
            log(&format!("cannot create a signalfd ({e}); polling instead"));
            return None;
        }
    };
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("signals".to_string())
        .spawn(move || {
            loop {
                match fd.read_signal() {
                    Ok(Some(info)) => {
                        let event = if info.ssi_signo == Signal::SIGCHLD as u32 {
                            Event::Child
                        } else {
                            Event::Terminate
                        };
                        if tx.send(event).is_err() {
                            return;
                        }
                    }
                    Ok(None) | Err(Errno::EINTR) => {}
                    Err(_) => return,
                }
            }
        });
    match spawned {
        Ok(_) => Some(rx),
        Err(e) => {
            log(&format!(
                "cannot start the signal thread ({e}); polling instead"
            ));
            None
        }
    }
}

/// A manifest's first container: its image, and `command` then `args`.
fn parse_manifest(content: &[u8]) -> Result<(String, Vec<String>), String> {
    let text = std::str::from_utf8(content).map_err(|e| format!("not UTF-8: {e}"))?;
    let manifest: runbook_shared::pod::StaticPod =
        serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    let (image, argv) = manifest.first()?;
    if argv.is_empty() {
        return Err("spec.containers[0] has no command".to_string());
    }
    Ok((image, argv))
}

/// The PATH a pod runs with. An etcd image picks the binaries of that version, as a
/// container runtime runs the image named: changing the tag in the manifest is an upgrade
/// or a downgrade. An etcd image this node does not hold does not start (ErrImagePull).
fn pod_path(config: &InitConfig, image: &str) -> Result<String, String> {
    let repository = image.rsplit_once(':').map_or(image, |(r, _)| r);
    if !repository.ends_with("/etcd") {
        return Ok(config.pod_path.clone());
    }
    match config.etcd_images.get(image) {
        Some(dir) => Ok(format!("{dir}:{}", config.pod_path)),
        None => Err(format!(
            "image {image} is not on this node (it holds {}); `runbook lab up --etcd-image VERSION` puts more there",
            config
                .etcd_images
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

struct Running {
    pid: Pid,
    /// When SIGTERM was sent, for a stop on purpose.
    stopping: Option<Instant>,
    killed: bool,
}

/// A static pod: one manifest file and its process.
struct Pod {
    stem: String,
    content: Vec<u8>,
    /// The image and argv of its first container.
    argv: Result<(String, Vec<String>), String>,
    running: Option<Running>,
    /// When its last run ended on its own; restarts wait RESTART_DELAY after that.
    crashed_at: Option<Instant>,
}

impl Pod {
    fn new(stem: &str, content: Vec<u8>) -> Pod {
        let mut pod = Pod {
            stem: stem.to_string(),
            content: Vec::new(),
            argv: Err(String::new()),
            running: None,
            crashed_at: None,
        };
        pod.set_content(content);
        pod
    }

    fn set_content(&mut self, content: Vec<u8>) {
        self.argv = parse_manifest(&content);
        if let Err(e) = &self.argv {
            log(&format!(
                "{}.yaml: not a static pod manifest I can run: {e}",
                self.stem
            ));
        }
        self.content = content;
        self.crashed_at = None;
    }
}

struct Kubelet {
    config: InitConfig,
    manifests_dir: PathBuf,
    sshd: Option<Pid>,
    pods: BTreeMap<String, Pod>,
}

impl Kubelet {
    fn new(config: InitConfig) -> Kubelet {
        Kubelet {
            manifests_dir: PathBuf::from(&config.manifests_dir),
            config,
            sshd: None,
            pods: BTreeMap::new(),
        }
    }

    fn log_file(&self, stem: &str) -> anyhow::Result<std::fs::File> {
        let path = Path::new(&self.config.logs_dir).join(format!("{stem}.log"));
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))
    }

    fn start_sshd(&mut self) -> anyhow::Result<()> {
        let log_file = self.log_file("sshd")?;
        let mut cmd = Command::new(&self.config.sshd);
        let child = unblock_signals_in_child(&mut cmd)
            .args(["-D", "-e", "-f", &self.config.sshd_config])
            .stdin(Stdio::null())
            .stdout(
                log_file
                    .try_clone()
                    .context("cannot duplicate a log handle")?,
            )
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("cannot start {}", self.config.sshd))?;
        let pid = pid_of(&child)?;
        log(&format!("sshd started (pid {pid}); it is never restarted"));
        self.sshd = Some(pid);
        Ok(())
    }

    fn run(&mut self, events: Option<mpsc::Receiver<Event>>) {
        let mut terminating = false;
        loop {
            match &events {
                Some(rx) => match rx.recv_timeout(TICK) {
                    Ok(Event::Terminate) => {
                        if !terminating {
                            log("asked to stop: stopping every pod");
                        }
                        terminating = true;
                    }
                    Ok(Event::Child) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(TICK),
                },
                None => std::thread::sleep(TICK),
            }
            self.reap();
            if terminating {
                for pod in self.pods.values_mut() {
                    stop(pod, "the node is stopping");
                }
                self.escalate();
                if self.pods.values().all(|p| p.running.is_none()) {
                    if let Some(sshd) = self.sshd {
                        let _ = kill(sshd, Signal::SIGTERM);
                    }
                    log("stopped");
                    return;
                }
            } else {
                self.sync();
                self.escalate();
            }
        }
    }

    /// Collects every exited child: pods, sshd, and orphans PID 1 inherits.
    fn reap(&mut self) {
        loop {
            let status = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => return,
                Ok(s) => s,
                Err(Errno::EINTR) => continue,
                // ECHILD: no children at all.
                Err(_) => return,
            };
            let (pid, how) = match status {
                WaitStatus::Exited(pid, code) => (pid, format!("exit status {code}")),
                WaitStatus::Signaled(pid, sig, _) => (pid, format!("killed by {sig}")),
                _ => continue,
            };
            if self.sshd == Some(pid) {
                log(&format!("sshd exited ({how}); not restarting it"));
                self.sshd = None;
                continue;
            }
            for pod in self.pods.values_mut() {
                if pod.running.as_ref().is_some_and(|r| r.pid == pid) {
                    let on_purpose = pod.running.as_ref().is_some_and(|r| r.stopping.is_some());
                    log(&format!("{} (pid {pid}) exited ({how})", pod.stem));
                    // Whatever the pod left in its process group goes with it.
                    let _ = killpg(pid, Signal::SIGKILL);
                    pod.running = None;
                    pod.crashed_at = if on_purpose {
                        None
                    } else {
                        Some(Instant::now())
                    };
                }
            }
        }
    }

    /// Brings the pods in line with the manifests directory.
    fn sync(&mut self) {
        let present = read_manifests(&self.manifests_dir);
        for (stem, content) in &present {
            match self.pods.get_mut(stem) {
                None => {
                    log(&format!("{stem}.yaml appeared"));
                    self.pods
                        .insert(stem.clone(), Pod::new(stem, content.clone()));
                }
                Some(pod) if pod.content != *content => {
                    log(&format!("{stem}.yaml changed"));
                    pod.set_content(content.clone());
                    stop(pod, "its manifest changed");
                }
                Some(_) => {}
            }
        }
        let mut gone = Vec::new();
        for (stem, pod) in self.pods.iter_mut() {
            if present.contains_key(stem) {
                continue;
            }
            if pod.running.is_some() {
                stop(pod, "its manifest left the manifests directory");
            } else {
                gone.push(stem.clone());
            }
        }
        for stem in gone {
            self.pods.remove(&stem);
        }
        let due: Vec<String> = self
            .pods
            .iter()
            .filter(|(stem, pod)| {
                present.contains_key(*stem)
                    && pod.running.is_none()
                    && pod.argv.is_ok()
                    && pod.crashed_at.is_none_or(|t| t.elapsed() >= RESTART_DELAY)
            })
            .map(|(stem, _)| stem.clone())
            .collect();
        for stem in due {
            self.start(&stem);
        }
    }

    fn start(&mut self, stem: &str) {
        let result = self.spawn_pod(stem);
        let Some(pod) = self.pods.get_mut(stem) else {
            return;
        };
        match result {
            Ok(pid) => {
                log(&format!("{stem} started (pid {pid})"));
                pod.running = Some(Running {
                    pid,
                    stopping: None,
                    killed: false,
                });
                pod.crashed_at = None;
            }
            Err(e) => {
                log(&format!("{stem}: cannot start: {e:#}"));
                pod.crashed_at = Some(Instant::now());
            }
        }
    }

    fn spawn_pod(&self, stem: &str) -> anyhow::Result<Pid> {
        let pod = self
            .pods
            .get(stem)
            .ok_or_else(|| anyhow!("no pod {stem}"))?;
        let (image, argv) = pod.argv.as_ref().map_err(|e| anyhow!("{e}"))?;
        let path = pod_path(&self.config, image).map_err(|e| anyhow!("{e}"))?;
        let (program, args) = argv.split_first().ok_or_else(|| anyhow!("empty command"))?;
        let mut log_file = self.log_file(stem)?;
        let _ = writeln!(
            log_file,
            "--- {} kubelet stand-in: starting {}",
            humantime::format_rfc3339_seconds(SystemTime::now()),
            argv.join(" ")
        );
        let mut cmd = Command::new(program);
        let child = unblock_signals_in_child(&mut cmd)
            .args(args)
            // A pod sees its own environment, not init's; PATH decides which etcd runs.
            .env_clear()
            .env("PATH", &path)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(
                log_file
                    .try_clone()
                    .context("cannot duplicate a log handle")?,
            )
            .stderr(log_file)
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot run {program}"))?;
        pid_of(&child)
    }

    /// SIGKILL for pods that outlived their SIGTERM grace.
    fn escalate(&mut self) {
        for pod in self.pods.values_mut() {
            if let Some(r) = pod.running.as_mut()
                && let Some(since) = r.stopping
                && !r.killed
                && since.elapsed() >= STOP_GRACE
            {
                log(&format!(
                    "{} (pid {}) ignored SIGTERM for {}s: SIGKILL",
                    pod.stem,
                    r.pid,
                    STOP_GRACE.as_secs()
                ));
                let _ = killpg(r.pid, Signal::SIGKILL);
                r.killed = true;
            }
        }
    }
}

/// Sends SIGTERM to a running pod's process group, once.
fn stop(pod: &mut Pod, why: &str) {
    if let Some(r) = pod.running.as_mut()
        && r.stopping.is_none()
    {
        log(&format!("stopping {} (pid {}): {why}", pod.stem, r.pid));
        if let Err(e) = killpg(r.pid, Signal::SIGTERM) {
            log(&format!("cannot signal {}: {e}", pod.stem));
        }
        r.stopping = Some(Instant::now());
    }
}

/// Gives a child the empty signal mask every program expects. This process blocks SIGCHLD,
/// SIGTERM and SIGINT for its signalfd, and a mask survives fork and exec (std's spawn does
/// not reset it): a pod would otherwise ignore the SIGTERM that stops it.
fn unblock_signals_in_child(cmd: &mut Command) -> &mut Command {
    // SAFETY: the closure runs between fork and exec and only calls pthread_sigmask, which is
    // async-signal-safe; it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(|| {
            SigSet::empty()
                .thread_set_mask()
                .map_err(std::io::Error::from)
        })
    }
}

fn pid_of(child: &std::process::Child) -> anyhow::Result<Pid> {
    i32::try_from(child.id())
        .map(Pid::from_raw)
        .map_err(|_| anyhow!("pid {} out of range", child.id()))
}

/// `*.yaml` regular files of the manifests directory, by stem; a missing directory is empty.
/// Subdirectories and other names are ignored, which is why parking a manifest in a
/// subdirectory stops its pod.
fn read_manifests(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(stem) = name.strip_suffix(".yaml") else {
            continue;
        };
        if stem.is_empty() || name.starts_with('.') || !path.is_file() {
            continue;
        }
        // A file that vanished between listing and reading is simply absent.
        if let Ok(content) = std::fs::read(&path) {
            out.insert(stem.to_string(), content);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_command_and_args_of_the_first_container() {
        let m = b"apiVersion: v1\nkind: Pod\nmetadata: {name: etcd}\nspec:\n  containers:\n  - command:\n    - etcd\n    - --name=cp1\n    args: [--x=1]\n    image: i\n  hostNetwork: true\nstatus: {}\n";
        assert_eq!(
            parse_manifest(m),
            Ok((
                "i".to_string(),
                vec![
                    "etcd".to_string(),
                    "--name=cp1".to_string(),
                    "--x=1".to_string()
                ]
            ))
        );
    }

    #[test]
    fn an_etcd_image_picks_its_binaries_and_an_absent_one_does_not_start() {
        let config = InitConfig {
            node: "cp1".into(),
            sshd: String::new(),
            sshd_config: String::new(),
            mounts: Vec::new(),
            manifests_dir: String::new(),
            logs_dir: String::new(),
            pod_path: "/k8s:/usr/bin".into(),
            etcd_images: [
                (
                    "registry.k8s.io/etcd:3.5.35-0".to_string(),
                    "/c/etcd-3.5.35".to_string(),
                ),
                (
                    "registry.k8s.io/etcd:3.6.16-0".to_string(),
                    "/c/etcd-3.6.16".to_string(),
                ),
            ]
            .into(),
        };
        assert_eq!(
            pod_path(&config, "registry.k8s.io/etcd:3.6.16-0").unwrap(),
            "/c/etcd-3.6.16:/k8s:/usr/bin"
        );
        assert_eq!(
            pod_path(&config, "registry.k8s.io/kube-apiserver:v1.34.4").unwrap(),
            "/k8s:/usr/bin"
        );
        let absent = pod_path(&config, "registry.k8s.io/etcd:3.7.0-0").unwrap_err();
        assert!(absent.contains("not on this node"), "{absent}");
    }

    #[test]
    fn refuses_manifests_without_a_command() {
        assert!(parse_manifest(b"spec:\n  containers: []\n").is_err());
        assert!(parse_manifest(b"spec:\n  containers:\n  - image: x\n").is_err());
        assert!(parse_manifest(b"not: [a pod").is_err());
        assert!(parse_manifest(&[0xff, 0xfe]).is_err());
    }
}
