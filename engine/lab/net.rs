//! The lab's network: a bridge, and per node a network namespace joined to it by a veth pair.
//!
//! Every name and address derives from the lab name, so that labs made by parallel test
//! processes never share a bridge, an interface name or a subnet, and so that `down` can find
//! the leftovers of a lab whose lab.json is gone. Interface names must fit Linux's IFNAMSIZ
//! (15 characters): `rb` + 6 hex digits for the bridge, `n<i>` appended for each veth.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use super::deps::program;
use super::run;

/// Where a lab lives on the network.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Second and third octets of 10.x.y.0/24.
    pub octets: (u8, u8),
    pub bridge: String,
    pub nodes: Vec<NodeNet>,
}

#[derive(Debug, Clone)]
pub struct NodeNet {
    pub name: String,
    pub address: String,
    pub netns: String,
    pub veth: String,
}

impl Layout {
    pub fn new(lab: &str, nodes: u8) -> Layout {
        let digest = Sha256::digest(lab.as_bytes());
        let h = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
        // 10.200.0.0 - 10.249.249.0: 12,500 subnets, away from the usual 10.0/16 and 10.96/12.
        let octets = ((200 + h % 50) as u8, ((h / 50) % 250) as u8);
        let tag = format!("{:02x}{:02x}{:02x}", digest[4], digest[5], digest[6]);
        let bridge = format!("rb{tag}");
        let nodes = (1..=nodes)
            .map(|i| NodeNet {
                name: format!("cp{i}"),
                address: Ipv4Addr::new(10, octets.0, octets.1, 10 + i).to_string(),
                netns: netns_name(lab, &format!("cp{i}")),
                veth: format!("{bridge}n{i}"),
            })
            .collect();
        Layout {
            octets,
            bridge,
            nodes,
        }
    }

    pub fn gateway(&self) -> String {
        Ipv4Addr::new(10, self.octets.0, self.octets.1, 1).to_string()
    }

    pub fn subnet(&self) -> String {
        format!("10.{}.{}.0/24", self.octets.0, self.octets.1)
    }
}

fn netns_name(lab: &str, node: &str) -> String {
    format!("runbook-{lab}-{node}")
}

fn ip() -> Command {
    Command::new(program("ip"))
}

/// Runs `ip -batch -` (one process for many changes) with the lines on stdin.
fn ip_batch(netns: Option<&str>, lines: &[String]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut cmd = ip();
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    cmd.args(["-batch", "-"]);
    let shown = super::describe(&cmd);
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run `{shown}`"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all((lines.join("\n") + "\n").as_bytes())
            .with_context(|| format!("cannot write to `{shown}`"))?;
    }
    let out = child
        .wait_with_output()
        .with_context(|| format!("`{shown}` did not finish"))?;
    if !out.status.success() {
        bail!(
            "`{shown}` failed ({}) on:\n{}\n{}",
            out.status,
            lines.join("\n"),
            super::output_summary(&out)
        );
    }
    Ok(())
}

/// Refuses a subnet some other interface already has (another lab whose name hashes to the
/// same subnet, or the host's own network).
pub fn check_subnet_free(layout: &Layout) -> anyhow::Result<()> {
    let out = run(ip().args(["-4", "-o", "addr", "show"]))?;
    let prefix = format!("10.{}.{}.", layout.octets.0, layout.octets.1);
    for line in out.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // "3: eth0    inet 10.1.2.3/24 brd ..."
        if let (Some(dev), Some(addr)) = (fields.get(1), fields.get(3))
            && addr.starts_with(&prefix)
            && *dev != layout.bridge
        {
            bail!(
                "the lab's subnet {} is already used by {dev} ({addr}); another lab or the host's network has it",
                layout.subnet()
            );
        }
    }
    Ok(())
}

/// Creates the bridge and each node's namespace, veth pair, address and default route.
pub fn create(layout: &Layout) -> anyhow::Result<()> {
    let gw = layout.gateway();
    let mut host = vec![
        format!("link add {} type bridge", layout.bridge),
        format!("addr add {gw}/24 dev {}", layout.bridge),
        format!("link set {} up", layout.bridge),
    ];
    for n in &layout.nodes {
        host.push(format!("netns add {}", n.netns));
        // The node end is created inside the namespace directly, as eth0.
        host.push(format!(
            "link add {} type veth peer name eth0 netns {}",
            n.veth, n.netns
        ));
        host.push(format!("link set {} master {} up", n.veth, layout.bridge));
    }
    ip_batch(None, &host).context("cannot create the lab's bridge and namespaces")?;
    for n in &layout.nodes {
        let inside = vec![
            "link set lo up".to_string(),
            format!("addr add {}/24 dev eth0", n.address),
            "link set eth0 up".to_string(),
            format!("route add default via {gw}"),
        ];
        ip_batch(Some(&n.netns), &inside)
            .with_context(|| format!("cannot configure the network of {}", n.name))?;
    }
    Ok(())
}

/// The network namespaces of a lab: `runbook-<lab>-cp<N>`, matched exactly so that lab `a`
/// never takes lab `a-cp1`'s namespaces.
pub fn lab_namespaces(lab: &str) -> anyhow::Result<Vec<String>> {
    let out = run(ip().args(["netns", "list"]))?;
    let prefix = format!("runbook-{lab}-cp");
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|ns| {
            ns.strip_prefix(&prefix)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_string)
        .collect())
}

/// Pids of every process in a network namespace.
pub fn netns_pids(ns: &str) -> anyhow::Result<Vec<i32>> {
    let out = run(ip().args(["netns", "pids", ns]))?;
    Ok(out
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

pub fn delete_netns(ns: &str) -> anyhow::Result<()> {
    if Path::new("/run/netns").join(ns).exists() {
        run(ip().args(["netns", "delete", ns]))?;
    }
    Ok(())
}

/// Deletes the lab's veths and bridge, found by the names derived from the lab name (they
/// are the same whatever lab.json says); returns whether any existed.
pub fn delete_links(lab: &str) -> anyhow::Result<bool> {
    let layout = Layout::new(lab, super::MAX_NODES);
    let mut links: Vec<String> = layout.nodes.iter().map(|n| n.veth.clone()).collect();
    links.push(layout.bridge.clone());
    let mut found = false;
    for link in links {
        let exists = |l: &str| Path::new("/sys/class/net").join(l).exists();
        if exists(&link) {
            found = true;
            // A veth also vanishes on its own when its peer's namespace goes: only a link
            // that is still there after a failed delete is a failure.
            if let Err(e) = run(ip().args(["link", "delete", &link]))
                && exists(&link)
            {
                return Err(e);
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_linux_limits_and_are_stable() {
        let a = Layout::new("a-very-long-lab-name-123", super::super::MAX_NODES);
        assert!(a.bridge.len() <= 15);
        for n in &a.nodes {
            assert!(n.veth.len() <= 15, "{}", n.veth);
        }
        assert_eq!(a.nodes[8].name, "cp9");
        assert_eq!(a.nodes[8].netns, "runbook-a-very-long-lab-name-123-cp9");
        let again = Layout::new("a-very-long-lab-name-123", 3);
        assert_eq!(again.subnet(), a.subnet());
        assert_eq!(again.bridge, a.bridge);
        assert_eq!(
            again.nodes[0].address,
            format!("10.{}.{}.11", a.octets.0, a.octets.1)
        );
        assert_eq!(
            again.gateway(),
            format!("10.{}.{}.1", a.octets.0, a.octets.1)
        );
    }

    #[test]
    fn different_labs_get_different_subnets_and_bridges() {
        let names = [
            "lab", "t34", "t35", "drill", "e2e-1", "e2e-2", "e2e-3", "perf",
        ];
        let layouts: Vec<Layout> = names.iter().map(|n| Layout::new(n, 3)).collect();
        for (i, a) in layouts.iter().enumerate() {
            assert!((200..250).contains(&a.octets.0));
            for b in &layouts[i + 1..] {
                assert_ne!(a.subnet(), b.subnet());
                assert_ne!(a.bridge, b.bridge);
            }
        }
    }
}
