//! Probing a lab from the host: the readiness wait of `up` and the table of `status`.
//!
//! Probes are the real thing: an ssh login with the lab's key and strict host key checking,
//! `etcdctl endpoint health` over TLS, and an HTTPS GET of kube-apiserver's /readyz. They run
//! as parallel processes with short timeouts, all with a clean environment (a user's
//! ETCDCTL_* or https_proxy must not change the answer).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::deps::{STANDARD_PATH, program};
use super::manifests::{APISERVER_PORT, CLIENT_PORT};
use super::node::{self, comm};
use super::state::{EtcdRuntime, LabState, NodeState};
use super::{log_tail, net, output_summary};

/// What one probe is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Check {
    Ssh,
    Etcd,
    Readyz,
}

impl Check {
    fn describe(self) -> &'static str {
        match self {
            Check::Ssh => "sshd does not accept an ssh login with the lab key",
            Check::Etcd => "etcd is not healthy",
            Check::Readyz => "kube-apiserver's /readyz is not 200",
        }
    }

    fn log(self) -> &'static str {
        match self {
            Check::Ssh => "sshd",
            Check::Etcd => "etcd",
            Check::Readyz => "kube-apiserver",
        }
    }
}

fn clean(program_name: &str) -> Command {
    let mut c = Command::new(program(program_name));
    c.env_clear()
        .env("PATH", STANDARD_PATH)
        .env(
            "HOME",
            std::env::var_os("HOME").unwrap_or_else(|| "/root".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn ssh_login(state: &LabState, n: &NodeState) -> Command {
    let mut c = clean("ssh");
    c.args(["-F", "/dev/null", "-i", &state.identity_file])
        .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", state.known_hosts))
        .args(["-o", "GlobalKnownHostsFile=/dev/null"])
        .args(["-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=2"])
        .arg(format!("root@{}", n.address))
        .arg("true");
    c
}

/// `etcdctl endpoint health` on every member, as the healthcheck client kubeadm uses (or,
/// on Kubespray's layout, the first node's etcd admin).
fn etcd_health(state: &LabState) -> Option<Command> {
    let first = state.nodes.first()?;
    let endpoints: Vec<String> = state
        .nodes
        .iter()
        .map(|n| format!("https://{}:{CLIENT_PORT}", n.address))
        .collect();
    let client = state.probe_client(first);
    let mut c = clean(&state.etcd.etcdctl);
    // No ETCDCTL_API: v3 is the default from 3.4 on, and 3.6 warns about the variable.
    c.arg(format!("--endpoints={}", endpoints.join(",")))
        .arg(format!("--cacert={}", client.ca))
        .arg(format!("--cert={}", client.cert))
        .arg(format!("--key={}", client.key))
        .args([
            "--dial-timeout=1s",
            "--command-timeout=2s",
            "endpoint",
            "health",
        ]);
    Some(c)
}

/// GET a URL; stdout is the body then a last line with the HTTP code.
fn curl(url: &str, ca: &str, client: Option<(&str, &str)>) -> Command {
    let mut c = clean("curl");
    c.args(["-sS", "--noproxy", "*", "--max-time", "2", "--cacert", ca]);
    if let Some((cert, key)) = client {
        c.args(["--cert", cert, "--key", key]);
    }
    c.args(["-w", "\n%{http_code}", url]);
    c
}

fn readyz(state: &LabState, n: &NodeState) -> Command {
    curl(
        &format!("https://{}:{APISERVER_PORT}/readyz", n.address),
        &format!("{}/ca.crt", state.pki_dir),
        None,
    )
}

/// (HTTP code, body) of a finished curl; code 0 when it never got an answer.
fn http_result(out: &Output) -> (u16, String) {
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, code) = text
        .trim_end()
        .rsplit_once('\n')
        .unwrap_or(("", text.trim()));
    let code = code.trim().parse().unwrap_or(0);
    let body = if code == 0 {
        output_summary(out)
    } else {
        body.trim().to_string()
    };
    (code, body)
}

fn spawn(mut c: Command) -> anyhow::Result<Child> {
    let shown = super::describe(&c);
    c.spawn().with_context(|| format!("cannot run `{shown}`"))
}

fn finish(child: Child) -> anyhow::Result<Output> {
    child.wait_with_output().context("a probe did not finish")
}

/// Which members `etcdctl endpoint health` called healthy, by address.
fn healthy_endpoints(out: &Output) -> Vec<String> {
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    text.lines()
        .filter(|l| l.contains(" is healthy"))
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|url| url.strip_prefix("https://"))
        .filter_map(|hp| hp.rsplit_once(':').map(|(h, _)| h.to_string()))
        .collect()
}

/// The etcdctl line about one member, for messages.
fn endpoint_line(out: &Output, address: &str) -> Option<String> {
    let prefix = format!("https://{address}:");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    text.lines()
        .find(|l| l.starts_with(&prefix))
        .map(str::to_string)
}

/// Waits until every node accepts an ssh login, every member is healthy and every
/// kube-apiserver is ready; fails early when a node's first process dies.
pub fn wait_until_ready(state: &LabState, timeout: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut ok: BTreeMap<(usize, Check), bool> = BTreeMap::new();
    let mut why: BTreeMap<(usize, Check), String> = BTreeMap::new();
    for i in 0..state.nodes.len() {
        for c in [Check::Ssh, Check::Etcd, Check::Readyz] {
            ok.insert((i, c), false);
            why.insert((i, c), "not checked yet".to_string());
        }
    }
    loop {
        for n in &state.nodes {
            if !node::is_init_of(n.init_pid, Path::new(&n.dir)) {
                let log = n.log("init");
                bail!(
                    "node {} stopped: its first process (pid {}) exited; {log}:\n{}",
                    n.name,
                    n.init_pid,
                    log_tail(Path::new(&log), 15)
                );
            }
        }
        let pending = |i: usize, c: Check| !ok.get(&(i, c)).copied().unwrap_or(false);
        let mut probes: Vec<(usize, Check, Child)> = Vec::new();
        for (i, n) in state.nodes.iter().enumerate() {
            if pending(i, Check::Ssh) {
                probes.push((i, Check::Ssh, spawn(ssh_login(state, n))?));
            }
            if pending(i, Check::Readyz) {
                probes.push((i, Check::Readyz, spawn(readyz(state, n))?));
            }
        }
        let etcd_pending = (0..state.nodes.len()).any(|i| pending(i, Check::Etcd));
        let etcd = match etcd_health(state) {
            Some(c) if etcd_pending => Some(spawn(c)?),
            _ => None,
        };
        for (i, check, child) in probes {
            let out = finish(child)?;
            let (passed, reason) = match check {
                Check::Readyz => {
                    let (code, body) = http_result(&out);
                    (code == 200, format!("HTTP {code}: {body}"))
                }
                _ => (out.status.success(), output_summary(&out)),
            };
            ok.insert((i, check), passed);
            why.insert((i, check), reason);
        }
        if let Some(child) = etcd {
            let out = finish(child)?;
            let healthy = healthy_endpoints(&out);
            for (i, n) in state.nodes.iter().enumerate() {
                let good = healthy.contains(&n.address);
                ok.insert((i, Check::Etcd), good);
                let reason =
                    endpoint_line(&out, &n.address).unwrap_or_else(|| output_summary(&out));
                why.insert((i, Check::Etcd), reason);
            }
        }
        if ok.values().all(|v| *v) {
            return Ok(());
        }
        if started.elapsed() > timeout {
            let mut report = String::new();
            for ((i, check), passed) in &ok {
                if *passed {
                    continue;
                }
                let n = &state.nodes[*i];
                report.push_str(&format!(
                    "\n  {}: {} (log: {}): {}",
                    n.name,
                    check.describe(),
                    n.log(check.log()),
                    why.get(&(*i, *check))
                        .map(|w| w.replace('\n', "\n      "))
                        .unwrap_or_default()
                ));
            }
            bail!(
                "lab {} is not ready after {}s:{report}",
                state.name,
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One row of `lab status`.
struct Row {
    cells: Vec<String>,
}

/// The status table: one row per node, everything probed for real.
pub fn status_table(state: &LabState) -> String {
    let mut health: Vec<Option<Child>> = Vec::new();
    let mut ready: Vec<Option<Child>> = Vec::new();
    for n in &state.nodes {
        let client = state.probe_client(n);
        let etcd_probe = curl(
            &format!("https://{}:{CLIENT_PORT}/health", n.address),
            &client.ca,
            Some((&client.cert, &client.key)),
        );
        health.push(spawn(etcd_probe).ok());
        ready.push(spawn(readyz(state, n)).ok());
    }
    let mut rows = vec![Row {
        cells: [
            "NODE",
            "ADDRESS",
            "INIT",
            "SSHD",
            "ETCD",
            "ETCD HEALTH",
            "KUBE-APISERVER",
            "CONTROLLER-MANAGER, SCHEDULER",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    }];
    for (i, n) in state.nodes.iter().enumerate() {
        let alive = node::is_init_of(n.init_pid, Path::new(&n.dir));
        let init = if alive && node::is_systemd_of(n.init_pid, Path::new(&n.dir)) {
            format!("systemd (pid {})", n.init_pid)
        } else if alive {
            format!("up (pid {})", n.init_pid)
        } else {
            format!("DOWN (pid {} gone)", n.init_pid)
        };
        let pids = net::netns_pids(&n.netns).unwrap_or_default();
        let named = |name: &str| -> Vec<i32> {
            pids.iter()
                .copied()
                .filter(|p| node::is_alive(*p) && comm(*p).as_deref() == Some(name))
                .collect()
        };
        let listening = std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::from((
                n.address
                    .parse::<std::net::Ipv4Addr>()
                    .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
                22,
            )),
            Duration::from_millis(500),
        )
        .is_ok();
        let sshd = match (named("sshd").is_empty(), listening) {
            (_, true) => "listening".to_string(),
            (false, false) => "running, not listening".to_string(),
            (true, false) => "not running".to_string(),
        };
        let show_pids = |p: &[i32]| {
            p.iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let etcd_pids = named("etcd");
        let etcd = if etcd_pids.is_empty() {
            "not running".to_string()
        } else {
            format!("running (pid {})", show_pids(&etcd_pids))
        };
        let etcd_health = match health[i].take().map(finish) {
            Some(Ok(out)) => {
                let (code, body) = http_result(&out);
                if code == 200 && body.contains("\"true\"") {
                    "healthy".to_string()
                } else if code == 0 {
                    "no answer".to_string()
                } else {
                    format!("unhealthy (HTTP {code})")
                }
            }
            _ => "cannot probe".to_string(),
        };
        let apiserver_pids = named("kube-apiserver");
        let readyz_text = match ready[i].take().map(finish) {
            Some(Ok(out)) => match http_result(&out).0 {
                0 => "no answer".to_string(),
                code => format!("readyz {code}"),
            },
            _ => "cannot probe".to_string(),
        };
        let apiserver = if apiserver_pids.is_empty() {
            format!("not running, {readyz_text}")
        } else {
            format!("pid {}, {readyz_text}", show_pids(&apiserver_pids))
        };
        // comm is cut at 15 bytes: kube-controller-manager shows as "kube-controller".
        let running = |comm: &str| {
            let p = named(comm);
            if p.is_empty() {
                "not running".to_string()
            } else {
                format!("pid {}", show_pids(&p))
            }
        };
        let controllers = format!(
            "{}, {}",
            running("kube-controller"),
            running("kube-scheduler")
        );
        rows.push(Row {
            cells: vec![
                n.name.clone(),
                n.address.clone(),
                init,
                sshd,
                etcd,
                etcd_health,
                apiserver,
                controllers,
            ],
        });
    }
    let mut widths = vec![0usize; rows[0].cells.len()];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(&r.cells) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = format!(
        "lab {}: etcd {} ({}, as {}), Kubernetes {} ({}), subnet {}, bridge {}\ninventory: {}\nkubeconfig: {}\n",
        state.name,
        state.etcd.version,
        state.etcd.bin_dir,
        match state.etcd_runtime {
            EtcdRuntime::StaticPod => "a static pod",
            EtcdRuntime::Systemd => "etcd.service under systemd",
        },
        state.kubernetes_version,
        state.kubernetes_dir,
        state.subnet,
        state.bridge,
        state.inventory,
        state.kubeconfig
    );
    for r in &rows {
        let line: Vec<String> = r
            .cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out.push_str("pids are host pids.\n");
    out
}
