//! `runbook-lab`: the local lab of real hosts on one machine (network, mount and PID
//! namespaces, sshd, etcd, Kubernetes), a crate of the workspace that `runbook lab` drives.
//!
//! Design note. A node is a network namespace joined to the lab's bridge, plus a PID, mount
//! and UTS namespace whose first process is `runbook lab init` (kubelet.rs). That process
//! bind-mounts the node's own directories over the kubeadm paths, starts sshd once, and runs
//! the static pods of /etc/kubernetes/manifests like kubelet does. Everything a node runs
//! (sshd sessions, etcd, kube-apiserver, kube-controller-manager, kube-scheduler) lives in
//! that PID namespace, so one SIGKILL to its first process ends the node; `down` then
//! removes what outlives processes: namespaces, links and files. Several labs coexist because
//! every name, the subnet and the interface names derive from the lab name (net.rs); lab.json
//! records what `up` made.
//!
//! With `--etcd-runtime systemd` a node's first process is real systemd instead (systemd.rs
//! boots it in the node's network namespace, on its own root), laid out as Kubespray lays out
//! a node whose etcd runs on the host (kubespray.rs): etcd.service, /etc/etcd.env,
//! /etc/ssl/etcd/ssl, and kubelet.service running the control plane's static pods.
//!
//! The crate needs nothing of the engine: shell quoting and the static pod type come from
//! `runbook-shared`, which the engine uses too. It prints only progress, on stderr; data
//! (an inventory path, a directory, a status table) is returned for the caller to print.
#![deny(clippy::print_stdout)]

/// `eprintln!` for this crate, in place of std's (defined before the modules, so its textual
/// scope covers them all), as in the engine's lib.rs: std's panics when stderr cannot be
/// written (`runbook lab up 2>&1 | head -1` once `head` has exited); a message nobody can
/// read is dropped instead.
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod build;
mod deps;
mod inventory;
mod kubelet;
mod kubernetes;
mod kubespray;
mod manifests;
mod net;
mod node;
mod pki;
mod ready;
mod state;
mod systemd;

use std::fmt::Write as _;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

pub use deps::{EtcdTools, Flavor};
pub use inventory::{CONNECT_TIMEOUT as INVENTORY_CONNECT_TIMEOUT, render as render_inventory};
pub use kubelet::{init, kubelet};
pub use state::{EtcdRuntime, LabState, NodeState};
pub use systemd::{SystemdHost, systemd_init};

/// The most nodes a lab may have (the CLI enforces the same bound).
pub const MAX_NODES: u8 = 9;
/// How long `up` waits for sshd, etcd and kube-apiserver before giving up (three API servers
/// starting at once on two cores take a while).
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// How long `down` lets a node run by systemd power off (its units stop; kubelet's pods get
/// kubelet's grace) before it is killed.
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(45);
/// Lab names end up in namespace names and file names; keep them short.
const MAX_NAME_LEN: usize = 24;

/// Why a lab command failed, split the way exit codes are: the request itself is unusable
/// (exit 2), or doing it failed (exit 1).
#[derive(Debug)]
pub enum LabError {
    Usage {
        what: String,
        cause: String,
        hint: Option<String>,
    },
    Failed {
        error: anyhow::Error,
        hint: Option<String>,
    },
}

impl LabError {
    fn usage(what: impl Into<String>, cause: impl Into<String>, hint: Option<&str>) -> Self {
        LabError::Usage {
            what: what.into(),
            cause: cause.into(),
            hint: hint.map(str::to_string),
        }
    }

    fn failed(error: anyhow::Error, hint: Option<String>) -> Self {
        LabError::Failed { error, hint }
    }
}

/// One line for callers that report a lab failure inside their own message (the drill).
impl std::fmt::Display for LabError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LabError::Usage { what, cause, .. } => write!(f, "{what}: {cause}"),
            LabError::Failed { error, .. } => write!(f, "{error:#}"),
        }
    }
}

impl From<anyhow::Error> for LabError {
    fn from(error: anyhow::Error) -> Self {
        LabError::Failed { error, hint: None }
    }
}

/// A validated lab name and where its files live.
#[derive(Debug, Clone)]
pub(crate) struct LabId {
    pub name: String,
    pub dir: PathBuf,
}

impl LabId {
    fn new(name: &str) -> Result<Self, LabError> {
        if !runbook_shared::is_label(name) || name.len() > MAX_NAME_LEN {
            return Err(LabError::usage(
                format!("invalid lab name {name:?}"),
                format!("a lab name is an RFC 1123 label of at most {MAX_NAME_LEN} characters"),
                Some("use lowercase letters, digits and '-', e.g. --name drill1"),
            ));
        }
        let root = lab_root()?;
        Ok(LabId {
            name: name.to_string(),
            dir: root.join(name),
        })
    }

    fn state_file(&self) -> PathBuf {
        self.dir.join("lab.json")
    }

    fn inventory(&self) -> PathBuf {
        self.dir.join("inventory.yaml")
    }

    fn node_dir(&self, node: &str) -> PathBuf {
        self.dir.join("nodes").join(node)
    }
}

/// `$RUNBOOK_LAB_ROOT`, else /var/lib/runbook-lab. Its path is written into sshd_config,
/// YAML and shell commands, so it is held to plain characters.
fn lab_root() -> Result<PathBuf, LabError> {
    let root = match std::env::var_os("RUNBOOK_LAB_ROOT") {
        Some(v) if !v.is_empty() => v,
        _ => return Ok(PathBuf::from("/var/lib/runbook-lab")),
    };
    let text = root.to_string_lossy();
    let plain = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c));
    if !text.starts_with('/') || !plain || text.split('/').any(|c| c == "..") || text.len() > 200 {
        return Err(LabError::usage(
            format!("unusable RUNBOOK_LAB_ROOT {text:?}"),
            "the lab root must be an absolute path of letters, digits and /._-+ (no `..`)",
            Some("e.g. RUNBOOK_LAB_ROOT=/tmp/runbook-lab, or unset it for /var/lib/runbook-lab"),
        ));
    }
    Ok(PathBuf::from(text.as_ref()))
}

/// The lab needs Linux namespaces and root.
fn preflight(command: &str) -> Result<(), LabError> {
    if std::env::consts::OS != "linux" {
        return Err(LabError::usage(
            format!("`runbook lab {command}` only works on Linux"),
            format!("this is {}", std::env::consts::OS),
            Some("the lab is made of network, mount and PID namespaces"),
        ));
    }
    if !nix::unistd::geteuid().is_root() {
        return Err(LabError::usage(
            format!("`runbook lab {command}` must run as root"),
            "the lab is made of network namespaces, a bridge and mounts, which only root may manage",
            Some("run it with sudo, e.g. `sudo runbook lab up`"),
        ));
    }
    Ok(())
}

/// Progress goes to stderr; stdout carries only data.
fn progress(lab: &str, message: &str) {
    eprintln!("lab {lab}: {message}");
}

/// What `up` makes.
#[derive(Debug, Clone)]
pub struct Spec {
    pub nodes: u8,
    pub flavor: Flavor,
    /// Other etcd versions whose images every node holds (upgrade and downgrade drills).
    pub images: Vec<Flavor>,
    /// An EncryptionConfiguration to give every kube-apiserver instead of a new key.
    pub encryption_config: Option<PathBuf>,
    /// How the nodes run etcd: kubeadm's static pod, or Kubespray's etcd.service under
    /// systemd as the node's init.
    pub etcd_runtime: EtcdRuntime,
}

/// `runbook lab up`: returns the inventory path.
pub fn up(name: &str, spec: &Spec) -> Result<PathBuf, LabError> {
    let (nodes, flavor) = (spec.nodes, spec.flavor);
    preflight("up")?;
    let id = LabId::new(name)?;
    if nodes == 0 || nodes > MAX_NODES {
        return Err(LabError::usage(
            format!("cannot make a lab of {nodes} nodes"),
            format!("a lab has 1 to {MAX_NODES} nodes"),
            None,
        ));
    }
    let encryption = match &spec.encryption_config {
        Some(path) => Some(kubernetes::read_encryption_config(path).map_err(|e| {
            LabError::usage(
                format!("cannot use --encryption-config {}", path.display()),
                format!("{e:#}"),
                Some("give the EncryptionConfiguration file kube-apiserver's --encryption-provider-config names"),
            )
        })?),
        None => None,
    };
    let started = Instant::now();
    let tools = deps::ensure(flavor, &spec.images, &id.name)?;
    if teardown(&id)? {
        progress(
            &id.name,
            "cleared the leftovers of an earlier lab of this name",
        );
    }
    let layout = net::Layout::new(&id.name, nodes);
    let hint = Some(format!(
        "see what is left with `runbook lab status --name {0}`; remove it with `runbook lab down --name {0}`",
        id.name
    ));
    let state = build(
        &id,
        &layout,
        &tools,
        encryption.as_deref(),
        spec.etcd_runtime,
    )
    .map_err(|e| LabError::failed(e, hint.clone()))?;
    progress(
        &id.name,
        &format!(
            "{} node(s) on {} (bridge {}), etcd {} from {}{}, Kubernetes {}; waiting for sshd, etcd and kube-apiserver",
            state.nodes.len(),
            state.subnet,
            state.bridge,
            state.etcd.version,
            state.etcd.bin_dir,
            match state.etcd_runtime {
                EtcdRuntime::StaticPod => "",
                EtcdRuntime::Systemd => " as etcd.service under systemd",
            },
            state.kubernetes_version
        ),
    );
    ready::wait_until_ready(&state, READY_TIMEOUT)
        .map_err(|e| LabError::failed(e, hint.clone()))?;
    kubernetes::seed(&state).map_err(|e| LabError::failed(e, hint))?;
    progress(
        &id.name,
        &format!(
            "ready in {:.1}s: {}",
            started.elapsed().as_secs_f64(),
            state
                .nodes
                .iter()
                .map(|n| format!("{}={}", n.name, n.address))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    );
    progress(
        &id.name,
        &format!(
            "ssh: ssh -F {} root@{}",
            id.dir.join("ssh_config").display(),
            state.nodes.first().map_or("", |n| n.address.as_str())
        ),
    );
    Ok(id.inventory())
}

/// Everything `up` makes, in order; lab.json is written as soon as processes exist, so that a
/// failure after that point can still be cleaned up precisely.
fn build(
    id: &LabId,
    layout: &net::Layout,
    tools: &deps::Tools,
    encryption: Option<&str>,
    runtime: EtcdRuntime,
) -> anyhow::Result<LabState> {
    std::fs::create_dir_all(&id.dir)
        .with_context(|| format!("cannot create the lab directory {}", id.dir.display()))?;
    let kubernetes_dir = tools.kubernetes.display().to_string();
    let pod_path = format!(
        "{}:{kubernetes_dir}:{}",
        tools.etcd.bin_dir,
        deps::STANDARD_PATH
    );

    net::check_subnet_free(layout)?;
    net::create(layout)?;

    let mut nodes: Vec<NodeState> = layout
        .nodes
        .iter()
        .map(|n| NodeState {
            name: n.name.clone(),
            address: n.address.clone(),
            netns: n.netns.clone(),
            veth: n.veth.clone(),
            dir: id.node_dir(&n.name).display().to_string(),
            init_pid: 0,
        })
        .collect();
    for n in &nodes {
        node::prepare_dirs(Path::new(&n.dir), runtime)?;
    }
    node::ssh_keys(id, &nodes)?;
    pki::generate(&id.dir.join("pki"), &nodes, runtime)?;
    kubernetes::write_all(&id.dir, &id.dir.join("pki"), &nodes, encryption)?;
    manifests::write_all(&nodes, &tools.etcd, runtime)?;
    let dir_text = id.dir.display().to_string();
    let mut needed = vec![kubernetes_dir.as_str(), dir_text.as_str()];
    needed.extend(tools.images.iter().map(|t| t.bin_dir.as_str()));
    let images: std::collections::BTreeMap<String, String> = tools
        .images
        .iter()
        .map(|t| (t.image(), t.bin_dir.clone()))
        .collect();
    for n in &nodes {
        node::write_sshd_config(id, n)?;
        node::write_init_config(n, &tools.sshd, &pod_path, &images, &needed)?;
    }
    let exe = std::env::current_exe().context("cannot find the runbook executable")?;
    let mut starting = Vec::new();
    match runtime {
        EtcdRuntime::StaticPod => {
            node::host_mount_points()?;
            for n in &nodes {
                starting.push(node::spawn_init(&exe, n)?);
            }
        }
        // systemd-init makes its mount points inside the node's own root, none here.
        EtcdRuntime::Systemd => {
            for n in &nodes {
                let root = kubespray::node_root(
                    n,
                    &nodes,
                    &tools.etcd,
                    &tools.sshd,
                    &exe,
                    node::split_mounts(n, &needed)?,
                    &needed,
                );
                starting.push(systemd::spawn_node(&exe, &id.name, n, root)?);
            }
        }
    }
    for (n, s) in nodes.iter_mut().zip(starting) {
        n.init_pid = node::find_init_pid(s, n)?;
    }

    let state = LabState {
        name: id.name.clone(),
        dir: id.dir.display().to_string(),
        subnet: layout.subnet(),
        gateway: layout.gateway(),
        bridge: layout.bridge.clone(),
        etcd: tools.etcd.clone(),
        kubernetes_dir,
        kubernetes_version: build::KUBERNETES.version(),
        pod_path,
        inventory: id.inventory().display().to_string(),
        kubeconfig: id.dir.join("admin.conf").display().to_string(),
        identity_file: id.dir.join("id_ed25519").display().to_string(),
        known_hosts: id.dir.join("known_hosts").display().to_string(),
        ssh_config: id.dir.join("ssh_config").display().to_string(),
        pki_dir: id.dir.join("pki").display().to_string(),
        etcd_runtime: runtime,
        nodes,
    };
    state.save(&id.state_file())?;
    inventory::write(&state, &id.inventory())?;
    Ok(state)
}

/// Which binaries `runbook lab bin` is about.
#[derive(Debug, Clone, Copy)]
pub enum Binaries {
    Etcd(Flavor),
    Kubernetes,
}

/// `runbook lab bin`: the directory of those binaries, installed or built first if needed.
/// Other tools rely on this: the directory holds `etcd`, `etcdctl` (and `etcdutl` from 3.5),
/// or `kube-apiserver`, `kube-controller-manager`, `kube-scheduler` and `kubectl`.
pub fn bin(which: Binaries) -> Result<PathBuf, LabError> {
    let lab = "bin";
    let built = matches!(
        which,
        Binaries::Kubernetes | Binaries::Etcd(Flavor::V3_5 | Flavor::V3_6)
    );
    let hint = built.then(|| {
        "the build log is named above; `go env GOPROXY` must reach the Go module proxy".to_string()
    });
    match which {
        Binaries::Etcd(flavor) => deps::etcd_tools(flavor, lab)
            .map(|t| PathBuf::from(t.bin_dir))
            .map_err(|e| LabError::failed(e, hint)),
        Binaries::Kubernetes => build::KUBERNETES
            .ensure(lab)
            .map_err(|e| LabError::failed(e, hint)),
    }
}

/// `runbook lab down`: idempotent; succeeds when there is nothing to remove.
pub fn down(name: &str) -> Result<(), LabError> {
    preflight("down")?;
    let id = LabId::new(name)?;
    if teardown(&id)? {
        progress(&id.name, "removed");
    } else {
        progress(&id.name, "nothing to remove");
    }
    Ok(())
}

/// Kills, unlinks and removes everything a lab of this name may have left, whether or not
/// lab.json survived. Returns whether anything was there.
fn teardown(id: &LabId) -> anyhow::Result<bool> {
    let mut found = false;
    let recorded = LabState::load(&id.state_file()).ok();
    let mut victims: Vec<i32> = Vec::new();
    if let Some(state) = &recorded {
        for n in &state.nodes {
            if node::is_init_of(n.init_pid, Path::new(&n.dir)) {
                victims.push(n.init_pid);
            }
        }
    }
    // A node run by systemd is powered off first (its units stopped as on a real host), and
    // killed like the others if it is not gone in time.
    let systemds: Vec<i32> = recorded
        .iter()
        .flat_map(|s| &s.nodes)
        .filter(|n| node::is_systemd_of(n.init_pid, Path::new(&n.dir)))
        .map(|n| n.init_pid)
        .collect();
    for pid in &systemds {
        systemd::poweroff(*pid);
    }
    let deadline = Instant::now() + POWEROFF_TIMEOUT;
    while systemds.iter().any(|p| node::is_alive(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let stuck = systemds.iter().filter(|p| node::is_alive(**p)).count();
    if stuck > 0 {
        progress(
            &id.name,
            &format!(
                "{stuck} node(s) did not power off within {} s: killed",
                POWEROFF_TIMEOUT.as_secs()
            ),
        );
    }
    // Killing a node's first process ends its PID namespace; its network namespace may still
    // hold processes (the `unshare` parent, a `lab exec`), so those go too.
    for pid in &victims {
        node::kill9(*pid);
    }
    let namespaces = net::lab_namespaces(&id.name)?;
    for ns in &namespaces {
        for pid in net::netns_pids(ns)? {
            node::kill9(pid);
            victims.push(pid);
        }
    }
    found |= !victims.is_empty() || !namespaces.is_empty();
    node::wait_gone(&victims, Duration::from_secs(10))?;
    // Empty now: the cgroups systemd managed go (a lab.json lost or not).
    found |= systemd::remove_node_cgroups(&id.name);
    // Links first: deleting a namespace destroys its veth asynchronously.
    found |= net::delete_links(&id.name)?;
    for ns in &namespaces {
        net::delete_netns(ns)?;
    }
    if id.dir.exists() {
        found = true;
        std::fs::remove_dir_all(&id.dir)
            .with_context(|| format!("cannot remove the lab directory {}", id.dir.display()))?;
    }
    Ok(found)
}

/// `runbook lab status`: the table to print. Fails only when the lab does not exist.
pub fn status(name: &str) -> Result<String, LabError> {
    preflight("status")?;
    let id = LabId::new(name)?;
    let state = load_state(&id)?;
    Ok(ready::status_table(&state))
}

fn load_state(id: &LabId) -> Result<LabState, LabError> {
    let file = id.state_file();
    if !file.exists() {
        return Err(LabError::failed(
            anyhow!("lab {:?} does not exist (no {})", id.name, file.display()),
            Some(format!(
                "create it with `runbook lab up --name {}`",
                id.name
            )),
        ));
    }
    LabState::load(&file).map_err(|e| {
        LabError::failed(
            e,
            Some(format!(
                "recreate the lab with `runbook lab up --name {}`",
                id.name
            )),
        )
    })
}

/// `runbook lab exec`: replaces this process with the command inside the node, so its exit
/// status, signals and stdio are the command's own. Returns only on failure.
pub fn exec(name: &str, node_name: &str, command: &[String]) -> LabError {
    if let Err(e) = preflight("exec") {
        return e;
    }
    let id = match LabId::new(name) {
        Ok(id) => id,
        Err(e) => return e,
    };
    let state = match load_state(&id) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let Some(n) = state.nodes.iter().find(|n| n.name == node_name) else {
        let names: Vec<&str> = state.nodes.iter().map(|n| n.name.as_str()).collect();
        return LabError::usage(
            format!("lab {:?} has no node {node_name:?}", id.name),
            format!("its nodes are {}", names.join(", ")),
            Some("e.g. `runbook lab exec --name LAB cp1 -- etcdctl member list`"),
        );
    };
    if !node::is_init_of(n.init_pid, Path::new(&n.dir)) {
        return LabError::failed(
            anyhow!(
                "node {} is down: its first process (pid {}) is gone",
                n.name,
                n.init_pid
            ),
            Some(format!(
                "recreate the lab with `runbook lab up --name {}`",
                id.name
            )),
        );
    }
    let Some((program, args)) = command.split_first() else {
        return LabError::usage("no command to run", "nothing after `--`", None);
    };
    // The paths are the node's own view: the command runs in its mount namespace.
    let client = state.etcdctl_client(n);
    let err = Command::new(deps::program("nsenter"))
        .arg("-t")
        .arg(n.init_pid.to_string())
        .args(["-n", "-m", "-p", "-u", "--"])
        .arg(program)
        .args(args)
        .env("PATH", &state.pod_path)
        .env(
            "ETCDCTL_ENDPOINTS",
            format!("https://{}:{}", n.address, manifests::CLIENT_PORT),
        )
        .env("ETCDCTL_CACERT", &client.ca)
        .env("ETCDCTL_CERT", &client.cert)
        .env("ETCDCTL_KEY", &client.key)
        .exec();
    LabError::failed(anyhow!(err).context("cannot run nsenter"), None)
}

/// kubectl on this machine as the admin of lab `name` (the kubeconfig beside its inventory).
pub fn kubectl(name: &str) -> Result<Command, LabError> {
    let id = LabId::new(name)?;
    let state = load_state(&id)?;
    Ok(kubernetes::kubectl(&state))
}

/// Runs an external command to completion and returns its stdout; a failure names the
/// command and carries what it printed.
pub(crate) fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let shown = describe(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run `{shown}`"))?;
    if !out.status.success() {
        bail!(
            "`{shown}` failed ({}): {}",
            out.status,
            output_summary(&out)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A command as a shell line, for messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = runbook_shared::shell::quote(&cmd.get_program().to_string_lossy());
    for a in cmd.get_args() {
        let _ = write!(s, " {}", runbook_shared::shell::quote(&a.to_string_lossy()));
    }
    s
}

/// The end of what a failed command printed: stderr, or stdout when stderr is empty.
pub(crate) fn output_summary(out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    let text = if err.trim().is_empty() {
        String::from_utf8_lossy(&out.stdout).into_owned()
    } else {
        err.into_owned()
    };
    let lines: Vec<&str> = text.trim().lines().collect();
    if lines.is_empty() {
        return "no output".to_string();
    }
    let tail = &lines[lines.len().saturating_sub(15)..];
    tail.join("\n")
}

/// The last lines of a log file, for error messages that point at it.
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.trim_end().lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}
