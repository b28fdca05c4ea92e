//! Rolling member changes: a new etcd version (upgrade, or downgrade with etcd's own
//! protocol) or new flags, one member at a time, followers first and the leader last (after
//! handing its leadership to a member already done), each member back, healthy, caught up and
//! serving quorum reads before the next one is touched.
//!
//! The change is made where kubeadm keeps it, the member's static pod manifest: the image
//! tag and the `--flag=value` lines, written beside the manifests directory and moved in
//! whole, so kubelet restarts the pod once with the new manifest. A member whose manifest
//! already says what is wanted and that runs it is left alone, so a resumed run carries on
//! where the last one stopped.

use std::time::{Duration, Instant};

use etcd_client::{Client, DowngradeOptions};

use super::{MemberStatus, TlsMaterial, connect, read_tls, status};
use crate::action::manifest_flags::edit_commands;
use crate::executor::{Executor, Target, output_on};
use crate::inventory::model::{Inventory, Node};
use crate::inventory::version::EtcdVersion;
use crate::shell::quote;

/// The oldest 3.5 etcd's v3.5 → v3.6 upgrade guide allows to upgrade from (it fixes the
/// upgrade blockers found in 3.5.24 to 3.5.26 and adds the v2store checks of 3.5.32).
pub const MIN_3_5_FOR_3_6: EtcdVersion = EtcdVersion::new(3, 5, 32);

/// The cluster version follows the members within seconds (etcd's leader checks them every
/// few seconds): waiting longer than this for it means something else is wrong.
const CLUSTER_VERSION_WAIT: Duration = Duration::from_secs(60);

fn soon(deadline: Instant) -> Instant {
    deadline.min(Instant::now() + CLUSTER_VERSION_WAIT)
}

/// How often a member is asked while it comes back.
const POLL: Duration = Duration::from_millis(250);
/// One question to a member: no answer within this is "not yet".
const ASK: Duration = Duration::from_secs(3);

/// What changes on every member.
#[derive(Debug, Clone)]
pub struct Change {
    /// The etcd version to run: the manifest's image tag becomes `<version>-0`.
    pub version: Option<EtcdVersion>,
    /// Flags to set (`name`, `value`), without their dashes.
    pub set: Vec<(String, String)>,
    /// Flags to drop.
    pub remove: Vec<String>,
    /// A lower version is only accepted when the plan says it is a downgrade.
    pub downgrade: bool,
    /// A member is caught up when its applied index is within this of the leader's.
    pub max_lag: u64,
    /// How long one member may take to come back before the roll stops (it does not go on
    /// to the next member).
    pub member_timeout: Duration,
    /// The manifest's file name in the manifests directory and where the copy before the
    /// change is kept (outside the manifests directory: kubelet would run it).
    pub manifest: String,
    /// Per member (node name): where the manifest before the change is kept.
    pub parking_dirs: std::collections::BTreeMap<String, String>,
}

/// What a version change is, judged from every member's version and the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Every member already runs the target (flags may still change).
    None,
    /// Within one minor version.
    Patch,
    /// One minor version up: plain rolling replacement.
    MinorUp,
    /// One minor version down: etcd's downgrade protocol first (validate, enable, storage
    /// version migrated), then rolling replacement.
    MinorDown,
}

/// Refuses what etcd does not support: skipping a minor version, upgrading to 3.6 from a 3.5
/// older than the upgrade guide asks, going down unless the plan says so (or up when it says
/// down), and downgrading below 3.5 (etcd's downgrade protocol starts with 3.6).
pub fn judge(
    members: &[(String, EtcdVersion)],
    target: EtcdVersion,
    downgrade: bool,
) -> Result<Step, String> {
    let mut step = Step::None;
    for (name, v) in members {
        let this = if *v == target {
            Step::None
        } else if v.major != target.major {
            return Err(format!(
                "{name} runs etcd {v}: a change of major version to {target} is not supported"
            ));
        } else if v.minor == target.minor {
            Step::Patch
        } else if v.minor + 1 == target.minor {
            if target.minor == 6 && *v < MIN_3_5_FOR_3_6 {
                return Err(format!(
                    "{name} runs etcd {v}: etcd's upgrade guide requires every 3.5 member at {MIN_3_5_FOR_3_6} or later before 3.6; upgrade to the newest 3.5 first"
                ));
            }
            Step::MinorUp
        } else if v.minor == target.minor + 1 {
            if *v < EtcdVersion::new(3, 6, 0) {
                return Err(format!(
                    "{name} runs etcd {v}: etcd supports downgrades from 3.6 on; going back to {target} means restoring a snapshot taken before the upgrade"
                ));
            }
            Step::MinorDown
        } else {
            return Err(format!(
                "{name} runs etcd {v}: {target} is more than one minor version away; etcd supports one minor version at a time (upgrade to the newest {}.{} first)",
                v.major,
                if target > *v {
                    v.minor + 1
                } else {
                    v.minor - 1
                }
            ));
        };
        let lower = target < *v;
        if lower && !downgrade {
            return Err(format!(
                "{name} runs etcd {v}, newer than {target}: this plan upgrades; use plans/etcd-downgrade.yaml to go down"
            ));
        }
        if !lower && this != Step::None && downgrade {
            return Err(format!(
                "{name} runs etcd {v}, older than {target}: this plan downgrades; use plans/etcd-upgrade.yaml to go up"
            ));
        }
        // A minor step outweighs a patch step, which outweighs none.
        if this != Step::None
            && (step == Step::None || matches!(this, Step::MinorUp | Step::MinorDown))
        {
            step = this;
        }
    }
    Ok(step)
}

/// The tag kubeadm gives etcd images: `3.6.5-0`.
pub fn image_with_version(image: &str, version: EtcdVersion) -> String {
    // The repository ends before the last `:` that follows the last `/` (a registry may
    // have a port).
    let name_start = image.rfind('/').map_or(0, |i| i + 1);
    let repository = match image[name_start..].find([':', '@']) {
        Some(i) => &image[..name_start + i],
        None => image,
    };
    format!("{repository}:{version}-0")
}

/// A manifest's image and `--flag[=value]` arguments, as the pod runs them.
struct Manifest {
    image: String,
    flags: Vec<(String, Option<String>)>,
}

fn parse_manifest(text: &[u8]) -> Result<Manifest, String> {
    let text = std::str::from_utf8(text).map_err(|e| format!("not UTF-8: {e}"))?;
    let pod: runbook_shared::pod::StaticPod =
        serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    let (image, argv) = pod.first()?;
    Ok(Manifest {
        image,
        flags: flags_of(&argv),
    })
}

/// The `--flag[=value]` arguments of an etcd command line.
fn flags_of(argv: &[String]) -> Vec<(String, Option<String>)> {
    argv.iter()
        .filter_map(|a| a.strip_prefix("--"))
        .map(|f| match f.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (f.to_string(), None),
        })
        .collect()
}

/// Flags that differ from what `change` wants, as `--flag` texts (empty: nothing to do).
fn flags_off(flags: &[(String, Option<String>)], change: &Change) -> Vec<String> {
    let mut off = Vec::new();
    for (f, v) in &change.set {
        if !flags.iter().any(|(k, x)| k == f && x.as_deref() == Some(v)) {
            off.push(format!("--{f}={v}"));
        }
    }
    for f in &change.remove {
        if flags.iter().any(|(k, _)| k == f) {
            off.push(format!("no --{f}"));
        }
    }
    off
}

/// The node-side commands that write the new manifest: a copy of the live one is edited in
/// the parking directory (the flags by the same edit as `manifest.etcd_flags`, which keeps a
/// dated copy of it first), then moved in whole: kubelet sees one change.
fn write_script(change: &Change, live: &str, parking_dir: &str, image: Option<&str>) -> String {
    let work = format!("{parking_dir}/{}.rolling", change.manifest);
    let mut lines = vec![
        "set -e".to_string(),
        format!("mkdir -p -m 0700 {}", quote(parking_dir)),
        format!("cp -p {} {}", quote(live), quote(&work)),
    ];
    if !change.set.is_empty() || !change.remove.is_empty() {
        lines.extend(edit_commands(&work, &change.set, &change.remove));
    } else {
        lines.push(format!(
            "cp -p {} {}.before-runbook-$(date -u +%Y%m%dT%H%M%SZ)",
            quote(&work),
            quote(&work)
        ));
    }
    if let Some(image) = image {
        // The first container's `image:` line; awk -v would read backslashes, and an image
        // reference has none (checked where the version is parsed).
        lines.push(format!(
            "awk -v img={} '!done && /^ *(- )?image: / {{ sub(/image: .*/, \"image: \" img); done = 1 }} {{ print }}' {w} > {w}.new && chmod --reference={w} {w}.new && mv {w}.new {w}",
            quote(image),
            w = quote(&work)
        ));
    }
    lines.push(format!("mv {} {}", quote(&work), quote(live)));
    lines.join("\n")
}

fn parking_dir<'a>(change: &'a Change, node: &Node) -> Result<&'a str, String> {
    change
        .parking_dirs
        .get(&node.name)
        .map(String::as_str)
        .ok_or_else(|| format!("no parking directory known for {}", node.name))
}

/// One member, reached through its tunnel with its TLS material read once.
struct Member<'a> {
    node: &'a Node,
    tls: Option<TlsMaterial>,
}

impl Member<'_> {
    async fn client<E: Executor + ?Sized>(&self, exec: &E) -> Result<Client, String> {
        let addr = exec
            .tunnel(self.node, self.node.etcd.client_port)
            .await
            .map_err(|e| e.0)?;
        connect(self.node, addr, self.tls.as_ref()).await
    }

    /// The cluster version this member reports (`/version`'s etcdcluster, e.g. "3.6.0"):
    /// the leader raises it only once every member runs the newer minor version.
    async fn cluster_version<E: Executor + ?Sized>(&self, exec: &E) -> Result<String, String> {
        let text = super::metrics::http_get(exec, self.node, self.tls.as_ref(), "/version").await?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("/version of {} is not JSON: {e}", self.node.name))?;
        v["etcdcluster"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("/version of {} has no etcdcluster: {text}", self.node.name))
    }

    async fn status<E: Executor + ?Sized>(&self, exec: &E) -> Result<MemberStatus, String> {
        let work = async {
            let mut c = self.client(exec).await?;
            status(self.node, &mut c).await
        };
        tokio::time::timeout(ASK, work)
            .await
            .map_err(|_| format!("{} did not answer in {}s", self.node.name, ASK.as_secs()))?
    }

    /// A linearizable read through this member: it has a leader and the cluster a quorum.
    async fn quorum_read<E: Executor + ?Sized>(&self, exec: &E) -> Result<(), String> {
        let work = async {
            let mut c = self.client(exec).await?;
            c.get("health", None)
                .await
                .map(|_| ())
                .map_err(|e| format!("a quorum read through {}: {e}", self.node.name))
        };
        tokio::time::timeout(ASK, work).await.map_err(|_| {
            format!(
                "a quorum read through {} took over {}s",
                self.node.name,
                ASK.as_secs()
            )
        })?
    }
}

/// The newest etcd process on the node and its arguments (none running: None).
async fn etcd_process<E: Executor + ?Sized>(
    exec: &E,
    node: &Node,
) -> Result<Option<(u32, Vec<String>)>, String> {
    let out = output_on(
        exec,
        node,
        "pid=$(pgrep -nx etcd) || exit 0; echo $pid; tr '\\0' '\\n' < /proc/$pid/cmdline || true",
        "cannot look for the etcd process",
    )
    .await?;
    let text = String::from_utf8_lossy(&out);
    let mut lines = text.lines();
    match lines.next().and_then(|l| l.trim().parse().ok()) {
        Some(pid) => Ok(Some((pid, lines.map(str::to_string).collect()))),
        None => Ok(None),
    }
}

pub fn versions_of(statuses: &[MemberStatus]) -> Result<Vec<(String, EtcdVersion)>, String> {
    statuses
        .iter()
        .map(|s| {
            EtcdVersion::parse(&s.version)
                .map(|v| (s.node.clone(), v))
                .map_err(|e| format!("{} reports version {:?}: {e}", s.node, s.version))
        })
        .collect()
}

/// Rolls `change` over every member of the inventory; returns what it did, one line each.
pub async fn roll<E: Executor + ?Sized>(
    exec: &E,
    inventory: &Inventory,
    change: &Change,
    deadline: Instant,
) -> Result<String, String> {
    let nodes = inventory.etcd_members();
    let mut members = Vec::new();
    for n in &nodes {
        members.push(Member {
            node: n,
            tls: read_tls(exec, n).await?,
        });
    }
    let mut report = Vec::new();
    let mut statuses = Vec::new();
    for m in &members {
        let st = m
            .status(exec)
            .await
            .map_err(|e| format!("{e}: every member must answer before a rolling change starts"))?;
        if !st.errors.is_empty() {
            return Err(format!(
                "{} reports errors: {}; fix them before a rolling change",
                st.node,
                st.errors.join("; ")
            ));
        }
        statuses.push(st);
    }
    let step = match change.version {
        Some(target) => judge(&versions_of(&statuses)?, target, change.downgrade)?,
        None => Step::None,
    };
    if let (Some(target), Step::MinorDown) = (change.version, step) {
        report.extend(enable_downgrade(exec, &members, target, deadline).await?);
    }

    // Followers in inventory order, then the leader.
    let mut order: Vec<usize> = (0..members.len()).collect();
    order.sort_by_key(|&i| statuses[i].is_leader);
    for i in order {
        let m = &members[i];
        match roll_member(exec, &members, m, change, deadline).await {
            Ok(line) => report.push(line),
            // What was done before the failure is what the operator needs next, and that a
            // second run carries on from there.
            Err(e) => {
                let done = if report.is_empty() {
                    String::new()
                } else {
                    format!("\nbefore that:\n{}", report.join("\n"))
                };
                return Err(format!(
                    "{e}{done}\nonce the cause is fixed, run the plan again: members that already run what is asked are left alone"
                ));
            }
        }
    }

    if let Some(target) = change.version {
        let mut versions = Vec::new();
        for m in &members {
            versions.push(format!("{} {}", m.node.name, m.status(exec).await?.version));
        }
        report.push(format!(
            "every member runs etcd {target}: {}",
            versions.join(", ")
        ));
        report.push(wait_cluster_version(exec, &members, target, soon(deadline)).await?);
        if step == Step::MinorDown {
            report.push(finish_downgrade(exec, &members, soon(deadline)).await?);
        }
        if inventory_version(inventory) != Some(target) {
            report.push(format!(
                "the inventory still says etcd {}: set `etcd.version: \"{target}\"` in it (it decides etcdutl and the restore's flags)",
                inventory_version(inventory).map_or("(none)".to_string(), |v| v.to_string())
            ));
        }
    }
    Ok(report.join("\n"))
}

fn inventory_version(inventory: &Inventory) -> Option<EtcdVersion> {
    inventory.etcd_members().first().map(|n| n.etcd.version)
}

/// etcd's downgrade protocol up to the rolling part: validate, enable (unless a resumed run
/// finds it enabled for this target), then wait until every member still on the newer minor
/// has migrated its storage to the target's.
async fn enable_downgrade<E: Executor + ?Sized>(
    exec: &E,
    members: &[Member<'_>],
    target: EtcdVersion,
    deadline: Instant,
) -> Result<Vec<String>, String> {
    let minor = format!("{}.{}", target.major, target.minor);
    let mut lines = Vec::new();
    let first = members.first().ok_or("no etcd member in the inventory")?;
    // etcd validates against the cluster version, which trails a just-finished upgrade by
    // a few seconds; a cluster version already at the target means a resumed run.
    let from = EtcdVersion::new(target.major, target.minor + 1, 0);
    if !first
        .cluster_version(exec)
        .await?
        .starts_with(&format!("{minor}."))
    {
        wait_cluster_version(exec, members, from, soon(deadline)).await?;
    }
    let mut c = first.client(exec).await?;
    let raw = c
        .status()
        .await
        .map_err(|e| format!("status of {}: {e}", first.node.name))?;
    let enabled = raw
        .downgrade_info()
        .is_some_and(|d| d.enabled() && d.target_version().starts_with(&minor));
    if enabled {
        lines.push(format!(
            "downgrade to {minor} already enabled (a resumed run)"
        ));
    } else {
        let mut mc = c.maintenance_client();
        mc.downgrade(DowngradeOptions::Validate(minor.clone()))
            .await
            .map_err(|e| format!("etcd refuses a downgrade to {minor}: {e}"))?;
        mc.downgrade(DowngradeOptions::Enable(minor.clone()))
            .await
            .map_err(|e| format!("cannot enable the downgrade to {minor}: {e}"))?;
        lines.push(format!(
            "downgrade to {minor} validated and enabled: the cluster speaks {minor} from now on"
        ));
    }
    let want = format!("{minor}.0");
    let started = Instant::now();
    for m in members {
        loop {
            let mut c = m.client(exec).await?;
            let s = c
                .status()
                .await
                .map_err(|e| format!("status of {}: {e}", m.node.name))?;
            // A member already on the target's binaries stores in its format.
            if s.storage_version() == want
                || EtcdVersion::parse(s.version()).is_ok_and(|v| v.minor == target.minor)
            {
                break;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{}'s storage version is still {:?}, not {want}: etcd has not migrated its schema; see its log",
                    m.node.name,
                    s.storage_version()
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }
    lines.push(format!(
        "every member's storage version is {want} (after {:.1}s)",
        started.elapsed().as_secs_f64()
    ));
    Ok(lines)
}

/// Waits until the cluster version is `target`'s minor (the leader raises it a few seconds
/// after the last member is upgraded; a downgrade sets it when enabled).
async fn wait_cluster_version<E: Executor + ?Sized>(
    exec: &E,
    members: &[Member<'_>],
    target: EtcdVersion,
    deadline: Instant,
) -> Result<String, String> {
    let want = format!("{}.{}.", target.major, target.minor);
    let first = members.first().ok_or("no etcd member in the inventory")?;
    let started = Instant::now();
    loop {
        let now = first.cluster_version(exec).await?;
        if now.starts_with(&want) {
            return Ok(format!(
                "cluster version {now} (after {:.1}s)",
                started.elapsed().as_secs_f64()
            ));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the cluster version is still {now}, not {}.{}: etcd raises it once every member runs that minor version",
                target.major, target.minor
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Once every member runs the target, etcd ends the downgrade by itself; say whether it has.
async fn finish_downgrade<E: Executor + ?Sized>(
    exec: &E,
    members: &[Member<'_>],
    deadline: Instant,
) -> Result<String, String> {
    let first = members.first().ok_or("no etcd member in the inventory")?;
    loop {
        let mut c = first.client(exec).await?;
        let s = c
            .status()
            .await
            .map_err(|e| format!("status of {}: {e}", first.node.name))?;
        if !s.downgrade_info().is_some_and(|d| d.enabled()) {
            return Ok("the downgrade is complete (etcd no longer reports it enabled)".into());
        }
        if Instant::now() >= deadline {
            return Ok("warning: etcd still reports the downgrade enabled; it ends once every member runs the target version".into());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One member: skip it when it already runs what is wanted; else hand over leadership if it
/// leads, write the manifest, and wait until it is back.
async fn roll_member<E: Executor + ?Sized>(
    exec: &E,
    members: &[Member<'_>],
    m: &Member<'_>,
    change: &Change,
    deadline: Instant,
) -> Result<String, String> {
    let node = m.node;
    let live = format!("{}/{}", node.etcd.manifests_dir, change.manifest);
    let text = output_on(
        exec,
        node,
        &format!("cat -- {}", quote(&live)),
        "cannot read the etcd manifest",
    )
    .await?;
    let manifest = parse_manifest(&text).map_err(|e| format!("{live} on {}: {e}", node.name))?;
    let image = change
        .version
        .map(|v| image_with_version(&manifest.image, v));
    let before = m.status(exec).await?;
    let image_off = image.as_ref().filter(|i| **i != manifest.image);
    let manifest_off = flags_off(&manifest.flags, change);
    // The manifest may say it all while the process does not yet (a run stopped between
    // writing the manifest and kubelet's restart): then only the restart is waited for.
    let process = etcd_process(exec, node).await?;
    let running_off = change
        .version
        .is_some_and(|v| EtcdVersion::parse(&before.version).ok() != Some(v))
        || process
            .as_ref()
            .is_some_and(|(_, args)| !flags_off(&flags_of(args), change).is_empty());
    if image_off.is_none() && manifest_off.is_empty() && !running_off {
        return Ok(format!(
            "{}: already runs {}{}; left alone",
            node.name,
            manifest.image,
            if change.set.is_empty() && change.remove.is_empty() {
                String::new()
            } else {
                " with the flags asked for".to_string()
            }
        ));
    }
    let role = if before.is_leader {
        "leader, last"
    } else {
        "follower"
    };
    // Every other member must answer before this one restarts: with one already down, a
    // restart could cost the quorum (two of three), which no rolling change is worth.
    for o in members.iter().filter(|o| o.node.name != node.name) {
        match o.status(exec).await {
            Ok(s) if s.errors.is_empty() => {}
            Ok(s) => {
                return Err(format!(
                    "{} reports {}: not restarting {} while another member is unwell",
                    o.node.name,
                    s.errors.join("; "),
                    node.name
                ));
            }
            Err(e) => {
                return Err(format!(
                    "{e}: not restarting {} while another member is down (the cluster could lose its quorum); bring {} back, then run again: members already changed are left alone",
                    node.name, o.node.name
                ));
            }
        }
    }
    let mut said = Vec::new();
    if before.is_leader {
        said.push(hand_over(exec, members, m).await?);
    }
    let old_pid = process.map(|(pid, _)| pid);
    let started = Instant::now();
    if image_off.is_some() || !manifest_off.is_empty() {
        let script = write_script(
            change,
            &live,
            parking_dir(change, node)?,
            image_off.map(String::as_str),
        );
        let out = exec
            .shell(Target::Node(node), &script, &[], Duration::from_secs(30))
            .await
            .map_err(|e| e.0)?;
        if !out.success() {
            return Err(format!(
                "cannot write the new manifest on {}: {}",
                node.name,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    let member_deadline = deadline.min(Instant::now() + change.member_timeout);
    let back = wait_back(exec, members, m, change, old_pid, member_deadline).await?;
    let what = match (&image_off, manifest_off.is_empty()) {
        (Some(i), true) => format!("{} -> {i}", manifest.image),
        (Some(i), false) => format!("{} -> {i}, {}", manifest.image, manifest_off.join(" ")),
        (None, false) => manifest_off.join(" "),
        (None, true) => "manifest already changed; waited for it".to_string(),
    };
    said.push(format!(
        "{} ({role}): {what}; etcd {} -> {}, back in {:.1}s (applied index {}, leader's {})",
        node.name,
        before.version,
        back.status.version,
        started.elapsed().as_secs_f64(),
        back.status.raft_applied_index,
        back.leader_index
    ));
    Ok(said.join("\n"))
}

/// Moves leadership to the follower with the highest applied index, so that the leader's
/// restart costs one planned hand-over rather than an election after a timeout.
async fn hand_over<E: Executor + ?Sized>(
    exec: &E,
    members: &[Member<'_>],
    leader: &Member<'_>,
) -> Result<String, String> {
    let mut best: Option<MemberStatus> = None;
    for o in members.iter().filter(|o| o.node.name != leader.node.name) {
        if let Ok(s) = o.status(exec).await
            && !s.is_learner
            && best
                .as_ref()
                .is_none_or(|b| s.raft_applied_index > b.raft_applied_index)
        {
            best = Some(s);
        }
    }
    let Some(to) = best else {
        return Ok(format!(
            "{}: no other member to hand leadership to; it restarts as the only member",
            leader.node.name
        ));
    };
    let id = u64::from_str_radix(&to.member_id, 16)
        .map_err(|e| format!("member id {:?}: {e}", to.member_id))?;
    let mut c = leader.client(exec).await?;
    c.move_leader(id).await.map_err(|e| {
        format!(
            "cannot move leadership from {} to {}: {e}",
            leader.node.name, to.node
        )
    })?;
    Ok(format!(
        "{}: leadership handed to {} before its restart",
        leader.node.name, to.node
    ))
}

struct Back {
    status: MemberStatus,
    leader_index: u64,
}

/// Waits until the member runs a new process (when its manifest changed) with the flags
/// asked for, answers with the target version, is within `max_lag` of the leader's index,
/// and serves a quorum read.
async fn wait_back<E: Executor + ?Sized>(
    exec: &E,
    members: &[Member<'_>],
    m: &Member<'_>,
    change: &Change,
    old_pid: Option<u32>,
    deadline: Instant,
) -> Result<Back, String> {
    let node = m.node;
    loop {
        let last = match check_back(exec, members, m, change, old_pid).await {
            Ok(back) => return Ok(back),
            Err(why) => why,
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "{} is not back in time: {last}; the roll stopped here and no later member was touched; see this member's etcd log; to put it back as it was, move the newest {}/{}.rolling.before-runbook-* over its manifest",
                node.name,
                parking_dir(change, node)?,
                change.manifest
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn check_back<E: Executor + ?Sized>(
    exec: &E,
    members: &[Member<'_>],
    m: &Member<'_>,
    change: &Change,
    old_pid: Option<u32>,
) -> Result<Back, String> {
    let node = m.node;
    let (pid, args) = etcd_process(exec, node)
        .await?
        .ok_or_else(|| format!("no etcd process runs on {}", node.name))?;
    if old_pid == Some(pid) {
        return Err(format!(
            "etcd on {} has not restarted yet (pid {pid})",
            node.name
        ));
    }
    let off = flags_off(&flags_of(&args), change);
    if !off.is_empty() {
        return Err(format!(
            "etcd on {} (pid {pid}) runs without {}",
            node.name,
            off.join(", ")
        ));
    }
    let st = m.status(exec).await?;
    if let Some(v) = change.version
        && EtcdVersion::parse(&st.version).ok() != Some(v)
    {
        return Err(format!(
            "{} answers as etcd {}, not {v}",
            node.name, st.version
        ));
    }
    if !st.errors.is_empty() {
        return Err(format!("{} reports {}", node.name, st.errors.join("; ")));
    }
    let mut leader_index = None;
    for o in members {
        if let Ok(s) = o.status(exec).await
            && s.is_leader
        {
            leader_index = Some(s.raft_index);
        }
    }
    let leader_index = leader_index.ok_or("no member is leader")?;
    if leader_index.saturating_sub(st.raft_applied_index) > change.max_lag {
        return Err(format!(
            "{} has applied index {}, the leader is at {leader_index}: more than {} behind",
            node.name, st.raft_applied_index, change.max_lag
        ));
    }
    m.quorum_read(exec).await?;
    Ok(Back {
        status: st,
        leader_index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> EtcdVersion {
        EtcdVersion::parse(s).unwrap()
    }

    fn at(vs: &[&str]) -> Vec<(String, EtcdVersion)> {
        vs.iter()
            .enumerate()
            .map(|(i, s)| (format!("cp{}", i + 1), v(s)))
            .collect()
    }

    #[test]
    fn upgrades_one_minor_at_a_time_from_a_recent_enough_3_5() {
        assert_eq!(
            judge(&at(&["3.5.35"; 3]), v("3.6.16"), false),
            Ok(Step::MinorUp)
        );
        // A resumed run: one member done already.
        assert_eq!(
            judge(&at(&["3.6.16", "3.5.35", "3.5.35"]), v("3.6.16"), false),
            Ok(Step::MinorUp)
        );
        assert_eq!(
            judge(&at(&["3.5.20"; 3]), v("3.5.35"), false),
            Ok(Step::Patch)
        );
        assert_eq!(
            judge(&at(&["3.6.16"; 3]), v("3.6.16"), false),
            Ok(Step::None)
        );
        let old = judge(&at(&["3.5.1", "3.5.35", "3.5.35"]), v("3.6.16"), false).unwrap_err();
        assert!(
            old.contains("cp1 runs etcd 3.5.1") && old.contains("3.5.32"),
            "{old}"
        );
        let skip = judge(&at(&["3.4.23"; 3]), v("3.6.16"), false).unwrap_err();
        assert!(skip.contains("more than one minor version"), "{skip}");
        assert!(skip.contains("newest 3.5"), "{skip}");
    }

    #[test]
    fn goes_down_only_when_the_plan_says_so_and_only_from_3_6() {
        let up_plan = judge(&at(&["3.6.16"; 3]), v("3.5.35"), false).unwrap_err();
        assert!(up_plan.contains("etcd-downgrade.yaml"), "{up_plan}");
        assert_eq!(
            judge(&at(&["3.6.16"; 3]), v("3.5.35"), true),
            Ok(Step::MinorDown)
        );
        assert_eq!(
            judge(&at(&["3.5.35", "3.6.16", "3.6.16"]), v("3.5.35"), true),
            Ok(Step::MinorDown)
        );
        let from_3_5 = judge(&at(&["3.5.35"; 3]), v("3.4.23"), true).unwrap_err();
        assert!(from_3_5.contains("from 3.6 on"), "{from_3_5}");
        let down_plan = judge(&at(&["3.5.35"; 3]), v("3.6.16"), true).unwrap_err();
        assert!(down_plan.contains("etcd-upgrade.yaml"), "{down_plan}");
    }

    #[test]
    fn the_image_keeps_its_repository_and_takes_kubeadms_tag() {
        let to = v("3.6.16");
        assert_eq!(
            image_with_version("registry.k8s.io/etcd:3.5.35-0", to),
            "registry.k8s.io/etcd:3.6.16-0"
        );
        assert_eq!(
            image_with_version("mirror.example:5000/k8s/etcd:3.5.21-0", to),
            "mirror.example:5000/k8s/etcd:3.6.16-0"
        );
        assert_eq!(
            image_with_version("registry.k8s.io/etcd@sha256:abc", to),
            "registry.k8s.io/etcd:3.6.16-0"
        );
        assert_eq!(image_with_version("etcd", to), "etcd:3.6.16-0");
    }

    #[test]
    fn the_written_manifest_has_the_new_image_and_flags_and_the_old_one_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let manifests = dir.path().join("manifests");
        let parked = dir.path().join("runbook-parked");
        std::fs::create_dir(&manifests).unwrap();
        let before = "spec:\n  containers:\n  - command:\n    - etcd\n    - --name=cp1\n    - --quota-backend-bytes=2147483648\n    image: registry.k8s.io/etcd:3.5.35-0\n    name: etcd\n";
        std::fs::write(manifests.join("etcd.yaml"), before).unwrap();
        let change = Change {
            version: Some(v("3.6.16")),
            set: vec![
                ("quota-backend-bytes".into(), "8589934592".into()),
                ("auto-compaction-retention".into(), "8h".into()),
            ],
            remove: vec![],
            downgrade: false,
            max_lag: 1000,
            member_timeout: Duration::from_secs(300),
            manifest: "etcd.yaml".into(),
            parking_dirs: Default::default(),
        };
        let live = manifests.join("etcd.yaml").display().to_string();
        let script = write_script(
            &change,
            &live,
            &parked.display().to_string(),
            Some("registry.k8s.io/etcd:3.6.16-0"),
        );
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let after = std::fs::read_to_string(manifests.join("etcd.yaml")).unwrap();
        assert_eq!(
            after,
            "spec:\n  containers:\n  - command:\n    - etcd\n    - --name=cp1\n    - --quota-backend-bytes=8589934592\n    - --auto-compaction-retention=8h\n    image: registry.k8s.io/etcd:3.6.16-0\n    name: etcd\n"
        );
        let m = parse_manifest(after.as_bytes()).unwrap();
        assert!(flags_off(&m.flags, &change).is_empty());
        // Nothing but the manifest in the manifests directory; the old one kept outside.
        assert_eq!(std::fs::read_dir(&manifests).unwrap().count(), 1);
        let kept: Vec<String> = std::fs::read_dir(&parked)
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect();
        assert_eq!(kept, vec![before.to_string()]);
    }
}
