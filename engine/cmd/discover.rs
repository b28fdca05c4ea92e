//! `runbook discover HOST...`: read how each node runs etcd over SSH — its static pod
//! manifest, or else its systemd unit and the unit's environment file — and write the
//! inventory it describes — names, addresses, data dir, URLs, certificate paths, the etcd
//! version (from the image, or from the unit's binary), and the etcdctl and etcdutl of that
//! version on the node — checked by the same loader plans use.

use std::time::Duration;

use serde::Serialize;
use serde_saphyr::{FlowMap, FlowSeq};

use super::{Done, EXIT_OK, Failure};
use crate::cli::DiscoverArgs as Discover;
use crate::diag::SourceMap;
use crate::executor::ssh::Ssh;
use crate::executor::{Executor, Target};
use crate::inventory::model::Node;
use crate::inventory::version::EtcdVersion;
use crate::shell::quote;
use crate::yaml::LoadFailure;

/// What one node's manifest or unit says.
#[derive(Clone)]
struct Found {
    name: String,
    address: String,
    version: String,
    data_dir: String,
    /// `--initial-cluster-token`, where it is not etcd's default.
    cluster_token: Option<String>,
    scheme: String,
    client_port: u16,
    peer_port: u16,
    tls: Option<(String, String, String)>,
    control_plane: bool,
    /// A systemd member: its unit and the environment file holding its flags (None: a
    /// static pod).
    unit: Option<(String, Option<String>)>,
    etcdctl: ToolChoice,
    /// None before etcd 3.5, which has no etcdutl.
    etcdutl: Option<ToolChoice>,
}

impl Found {
    /// What is wrong with this node's tools, one line each.
    fn notes(&self) -> Vec<String> {
        let mut notes: Vec<String> = [Some(&self.etcdctl), self.etcdutl.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|c| c.note(&self.name))
            .collect();
        if let Some((unit, None)) = &self.unit {
            notes.push(format!(
                "{}: {unit} has no EnvironmentFile: its flags are on its command line, which etcd.flags and etcd.member_add do not edit; move them into an environment file (ETCD_NAME=..., one per flag)",
                self.name
            ));
        }
        notes
    }
}

/// An etcd tool found on a node, with the version `TOOL version` printed (None: it did not
/// run, or printed none).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Candidate {
    path: String,
    version: Option<EtcdVersion>,
}

impl Candidate {
    /// Its path in the etcd container's image, when it was found inside the running container
    /// (through /proc/PID/root): gone once etcd stops.
    fn in_image(&self) -> Option<&str> {
        let (_pid, rest) = self.path.strip_prefix("/proc/")?.split_once('/')?;
        rest.strip_prefix("root")
    }

    fn in_container(&self) -> bool {
        self.in_image().is_some()
    }
}

/// Which etcdctl or etcdutl a node's inventory entry names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ToolChoice {
    /// A build of the member's etcd version (major.minor), on the node's own filesystem.
    Use(String),
    /// None: what was found instead, for the operator.
    NoMatch {
        tool: &'static str,
        want: EtcdVersion,
        found: Vec<Candidate>,
    },
}

/// Prefers the member's exact version, then the first (in probe order: PATH, etcd's own
/// directory, the usual install directories) of its major.minor: a restore must use the tool
/// of the snapshot's etcd, and `tools::check` refuses a run with another. A build inside the
/// etcd container is never chosen: the path vanishes when a restore stops etcd.
fn choose(tool: &'static str, want: EtcdVersion, found: &[Candidate]) -> ToolChoice {
    let usable = || found.iter().filter(|c| !c.in_container());
    let same_minor = |v: &EtcdVersion| (v.major, v.minor) == (want.major, want.minor);
    usable()
        .find(|c| c.version == Some(want))
        .or_else(|| usable().find(|c| c.version.as_ref().is_some_and(same_minor)))
        .map(|c| ToolChoice::Use(c.path.clone()))
        .unwrap_or_else(|| ToolChoice::NoMatch {
            tool,
            want,
            found: found.to_vec(),
        })
}

impl ToolChoice {
    /// For a node without a matching tool: what was found and what to do, in one line.
    fn note(&self, node: &str) -> Option<String> {
        let ToolChoice::NoMatch { tool, want, found } = self else {
            return None;
        };
        let minor = format!("{}.{}", want.major, want.minor);
        let seen: Vec<String> = found
            .iter()
            .filter(|c| !c.in_container())
            .map(|c| match c.version {
                Some(v) => format!("{} is {v}", c.path),
                None => format!("{} does not run", c.path),
            })
            .collect();
        let seen = if seen.is_empty() {
            "none was found".to_string()
        } else {
            seen.join(", ")
        };
        let inside = found
            .iter()
            .find(|c| {
                c.in_container()
                    && c.version
                        .is_some_and(|v| (v.major, v.minor) == (want.major, want.minor))
            })
            .and_then(|c| c.in_image())
            .map(|image| {
                format!(
                    "; the etcd container has one ({image} in its image): copy it out while etcd runs, e.g. cp /proc/$(pgrep -xo etcd)/root{image} /usr/local/bin/{tool}-{minor}"
                )
            })
            .unwrap_or_default();
        Some(format!(
            "{node} has no {tool} {minor} for its etcd {want} ({seen}){inside}; install one and set etcd.{tool} to it"
        ))
    }
}

fn flag<'a>(words: &'a [String], name: &str) -> Option<&'a str> {
    let prefix = format!("--{name}=");
    words.iter().find_map(|w| w.strip_prefix(&prefix))
}

/// `https://10.0.0.11:2380` -> (scheme, host, port).
fn url_parts(url: &str) -> Option<(String, String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let (host, port) = rest.trim_end_matches('/').rsplit_once(':')?;
    Some((
        scheme.to_string(),
        host.trim_matches(['[', ']']).to_string(),
        port.parse().ok()?,
    ))
}

/// The inventory `discover` writes, field for field as the inventory loader reads it: only
/// what was found, in the order an operator reads it (serialised by serde-saphyr, which
/// quotes what needs quoting).
#[derive(Serialize)]
struct InventoryOut<'a> {
    cluster: &'a str,
    etcd: EtcdOut<'a>,
    ssh: SshOut<'a>,
    nodes: Vec<FlowMap<NodeOut<'a>>>,
}

#[derive(Serialize)]
struct EtcdOut<'a> {
    version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    manifests_dir: Option<&'a str>,
    #[serde(flatten)]
    runtime: RuntimeOut<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scheme: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<FlowMap<TlsOut<'a>>>,
    /// The running cluster's token, so a restore can refuse to reuse it.
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    etcdctl: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    etcdutl: Option<&'a str>,
}

/// `runtime`, `unit` and `env_file` of a systemd member; nothing for a static pod (the
/// default).
#[derive(Serialize, Default, PartialEq, Eq)]
struct RuntimeOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    runtime: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unit: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    env_file: Option<&'a str>,
}

impl<'a> RuntimeOut<'a> {
    fn of(f: &'a Found) -> RuntimeOut<'a> {
        match &f.unit {
            None => RuntimeOut::default(),
            Some((unit, env_file)) => RuntimeOut {
                runtime: Some("systemd"),
                unit: Some(unit),
                env_file: env_file.as_deref(),
            },
        }
    }
}

#[derive(Serialize)]
struct TlsOut<'a> {
    ca: &'a str,
    cert: &'a str,
    key: &'a str,
}

#[derive(Serialize)]
struct SshOut<'a> {
    user: &'a str,
    port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    connect_timeout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    identity_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    known_hosts: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    config_file: Option<String>,
}

/// Only what differs from the cluster-wide settings is written per node.
#[derive(Serialize)]
struct NodeEtcdOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<&'a str>,
    #[serde(flatten)]
    runtime: RuntimeOut<'a>,
    /// Each member's own certificate where they differ (Kubespray's member-<node>.pem).
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<TlsOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    etcdctl: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    etcdutl: Option<&'a str>,
}

impl NodeEtcdOut<'_> {
    fn is_empty(&self) -> bool {
        self.version.is_none()
            && self.data_dir.is_none()
            && self.tls.is_none()
            && self.runtime == RuntimeOut::default()
            && self.etcdctl.is_none()
            && self.etcdutl.is_none()
    }
}

#[derive(Serialize)]
struct NodeOut<'a> {
    name: &'a str,
    address: &'a str,
    roles: FlowSeq<Vec<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    etcd: Option<FlowMap<NodeEtcdOut<'a>>>,
}

/// The ssh settings given on the command line.
fn ssh_out(d: &Discover, connect_timeout: Option<u64>) -> SshOut<'_> {
    let path = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
    SshOut {
        user: &d.user,
        port: d.port,
        connect_timeout,
        identity_file: path(&d.identity),
        known_hosts: path(&d.known_hosts),
        config_file: path(&d.ssh_config),
    }
}

fn to_yaml(inv: &InventoryOut<'_>) -> String {
    // Plain structs of strings and numbers: serialisation cannot fail.
    serde_saphyr::to_string(inv).expect("the inventory serialises")
}

/// The hosts as a throwaway inventory, to connect with the ssh settings checked as usual.
fn bootstrap_inventory(d: &Discover) -> String {
    let names: Vec<String> = (1..=d.hosts.len()).map(|i| format!("host{i}")).collect();
    to_yaml(&InventoryOut {
        cluster: "discovering",
        etcd: EtcdOut {
            version: "3.5.0",
            data_dir: None,
            manifests_dir: None,
            runtime: RuntimeOut::default(),
            scheme: None,
            client_port: None,
            peer_port: None,
            tls: None,
            cluster_token: None,
            etcdctl: None,
            etcdutl: None,
        },
        ssh: ssh_out(d, Some(10)),
        nodes: names
            .iter()
            .zip(&d.hosts)
            .map(|(name, host)| {
                FlowMap(NodeOut {
                    name,
                    address: host,
                    roles: FlowSeq(vec!["etcd"]),
                    etcd: None,
                })
            })
            .collect(),
    })
}

pub fn run(d: &Discover) -> Done {
    if d.hosts.is_empty() {
        return Err(Failure::usage(
            "discover needs at least one host",
            &"no HOST was given",
            None,
        ));
    }
    // The hosts become a throwaway inventory, so SSH settings are checked like any other.
    let tmp = match tempfile::Builder::new()
        .prefix("runbook-discover")
        .suffix(".yaml")
        .tempfile()
    {
        Ok(t) => t,
        Err(e) => return Err(Failure::usage("cannot create a temporary file", &e, None)),
    };
    if let Err(e) = std::fs::write(tmp.path(), bootstrap_inventory(d)) {
        return Err(Failure::usage("cannot write a temporary file", &e, None));
    }
    let mut sources = SourceMap::default();
    let boot = match crate::inventory::load(tmp.path(), &mut sources) {
        Ok(i) => i,
        Err(LoadFailure::Invalid(ds)) => {
            eprint!("{}", ds.render(&sources));
            return Err(Failure::usage(
                "the hosts or SSH settings are not valid",
                &"see above",
                None,
            ));
        }
        Err(LoadFailure::Unreadable { path, error }) => {
            return Err(Failure::usage(&format!("cannot read {path}"), &error, None));
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return Err(Failure::usage("cannot start the async runtime", &e, None)),
    };
    let control = match crate::executor::ssh::private_control_dir("discover") {
        Ok(d) => d,
        Err(e) => {
            return Err(Failure::usage(
                "cannot create the SSH control directory",
                &e,
                None,
            ));
        }
    };
    let found = rt.block_on(async {
        let exec = Ssh::new(control.path().to_path_buf());
        let nodes: Vec<&Node> = boot.nodes.iter().collect();
        let failed = exec.connect(&nodes).await;
        let result = if failed.is_empty() {
            let mut out = Vec::new();
            let mut errors = Vec::new();
            for n in &nodes {
                match read_node(&exec, n, &d.manifests_dir, &d.unit).await {
                    Ok(f) => out.push(f),
                    Err(e) => errors.push(format!("{}: {e}", n.address)),
                }
            }
            if errors.is_empty() {
                Ok(out)
            } else {
                Err(errors)
            }
        } else {
            Err(failed.into_iter().map(|(_, e)| e.0).collect())
        };
        exec.close().await;
        result
    });
    drop(control);
    let found = found.map_err(|errors| Failure::Invalid {
        what: format!("cannot read {} of the hosts", errors.len()),
        causes: errors,
        hint: None,
    })?;
    for (n, f) in boot.nodes.iter().zip(&found) {
        for note in f.notes() {
            eprintln!("warning: {note}");
        }
        if n.address != f.address {
            eprintln!(
                "warning: {} advertises its peer URL on {}: the inventory uses that address (restores compute member IDs from it); make sure ssh reaches it",
                n.address, f.address
            );
        }
    }
    let yaml = render(d, &found);
    // The result must load like any inventory before anyone relies on it.
    let loaded = std::fs::write(tmp.path(), &yaml)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            crate::inventory::load(tmp.path(), &mut SourceMap::default()).map_err(|e| match e {
                LoadFailure::Invalid(ds) => ds.render(&SourceMap::default()),
                LoadFailure::Unreadable { error, .. } => error.to_string(),
            })
        });
    if let Err(e) = loaded {
        // Shown anyway: what was found is the way to see what went wrong.
        super::print_out(&yaml)?;
        return Err(Failure::invalid(format!(
            "the discovered inventory does not load:\n{e}"
        )));
    }
    match &d.out {
        None => {
            super::print_out(&yaml)?;
        }
        Some(p) => {
            if let Err(e) = std::fs::write(p, &yaml) {
                return Err(Failure::usage(
                    &format!("cannot write {}", p.display()),
                    &e,
                    None,
                ));
            }
            eprintln!("wrote {} ({} nodes)", p.display(), found.len());
        }
    }
    Ok(EXIT_OK)
}

/// Lists every etcdctl and etcdutl on a node with its version, one line each:
/// `TOOL<TAB>PATH<TAB>REAL PATH<TAB>VERSION LINE` (the last empty when it does not run). Where
/// it looks, in order: PATH; the directory of etcd itself (the manifest's command when it is a
/// path, and the running etcd's binary when it shares the host's root); the usual install
/// directories; and the running etcd container's binary directory, through /proc/PID/root.
/// `$1` is the manifest's command.
const TOOL_PROBE: &str = r#"cmd=$1; dirs=$(printf '%s' "$PATH" | tr ':' '\n')
case $cmd in /*) dirs="$dirs
${cmd%/*}" ;; esac
pid=$(pgrep -xo etcd 2>/dev/null)
if [ -n "$pid" ] && exe=$(readlink "/proc/$pid/exe" 2>/dev/null) && [ -n "$exe" ]; then
  if [ "$(stat -L -c %d:%i "/proc/$pid/root" 2>/dev/null)" = "$(stat -L -c %d:%i / 2>/dev/null)" ]; then
    dirs="$dirs
${exe%/*}"
  else
    inside="/proc/$pid/root${exe%/*}"
  fi
fi
dirs="$dirs
/usr/local/bin
/usr/bin
/opt/etcd/bin
/opt/etcd
$inside"
t=; command -v timeout >/dev/null 2>&1 && t="timeout 10"
for tool in etcdctl etcdutl; do
  printf '%s\n' "$dirs" | while IFS= read -r d; do
    p=$d/$tool
    [ -n "$d" ] && [ -f "$p" ] && [ -x "$p" ] || continue
    # Inside the container, the host's readlink would resolve through the wrong root.
    case $p in /proc/*) real=$p ;; *) real=$(readlink -f "$p" 2>/dev/null) || real=$p ;; esac
    line=$($t "$p" version </dev/null 2>/dev/null | grep -m 1 'version:' | tr '\t' ' ')
    printf '%s\t%s\t%s\t%s\n' "$tool" "$p" "$real" "$line"
  done
done
true"#;

/// The probe's lines for `tool`, in order, once per real file.
fn candidates(probe: &str, tool: &str) -> Vec<Candidate> {
    let mut seen = std::collections::HashSet::new();
    probe
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let (t, path, real, line) = (f.next()?, f.next()?, f.next()?, f.next().unwrap_or(""));
            (t == tool && seen.insert(real.to_string())).then(|| Candidate {
                path: path.to_string(),
                version: line
                    .split("version:")
                    .nth(1)
                    .and_then(|v| EtcdVersion::parse(v).ok()),
            })
        })
        .collect()
}

/// Runs `script` on the node; its standard output, or what went wrong.
async fn read(exec: &Ssh, n: &Node, script: &str, what: &str) -> Result<String, String> {
    let out = exec
        .shell(Target::Node(n), script, &[], Duration::from_secs(30))
        .await
        .map_err(|e| e.0)?;
    if !out.success() {
        return Err(format!(
            "cannot read {what}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// How etcd runs on the node: its static pod manifest's image and command line, or its
/// unit's binary version and command line (the environment file's `ETCD_*` settings as
/// flags, after the unit's own arguments, which etcd prefers).
async fn read_etcd(
    exec: &Ssh,
    n: &Node,
    dir: &str,
    unit: &str,
) -> Result<(String, Vec<String>, Option<(String, Option<String>)>, bool), String> {
    let script = format!(
        "if [ -e {m}/etcd.yaml ]; then echo static-pod; cat -- {m}/etcd.yaml; \
         elif command -v systemctl >/dev/null && systemctl cat -- {u} >/dev/null 2>&1; then echo systemd; systemctl cat -- {u}; \
         else echo {m}/etcd.yaml does not exist and there is no systemd unit {u} >&2; exit 1; fi; \
         echo '---runbook---'; {{ test -e {m}/kube-apiserver.yaml && echo control-plane; true; }}",
        m = quote(dir),
        u = quote(unit)
    );
    let text = read(exec, n, &script, "how etcd runs").await?;
    let (head, tail) = text.split_once("---runbook---\n").unwrap_or((&text, ""));
    let control_plane = !tail.trim().is_empty();
    let (kind, body) = head.split_once('\n').unwrap_or((head, ""));
    if kind == "static-pod" {
        let file: std::sync::Arc<str> = format!("{}:{dir}/etcd.yaml", n.address).into();
        let pod: crate::pod::StaticPod =
            crate::yaml::parse(body, &file, "manifest").map_err(|ds| {
                format!(
                    "{dir}/etcd.yaml is not a pod manifest: {}",
                    ds.render(&SourceMap::default())
                )
            })?;
        let (image, words) = pod.first()?;
        let version = image
            .rsplit_once(':')
            .map(|(_, tag)| {
                tag.trim_start_matches('v')
                    .split('-')
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .filter(|v| EtcdVersion::parse(v).is_ok())
            .ok_or_else(|| format!("cannot read an etcd version from the image {image:?}"))?;
        return Ok((version, words, None, control_plane));
    }
    let service = Unit::parse(body);
    let binary = service
        .exec_start
        .first()
        .cloned()
        .ok_or_else(|| format!("{unit} has no ExecStart"))?;
    let mut script = format!("{} --version", quote(&binary));
    for f in &service.env_files {
        script.push_str(&format!(
            "; echo '---runbook---'; cat -- {} 2>/dev/null; true",
            quote(f.trim_start_matches('-'))
        ));
    }
    let text = read(exec, n, &script, &format!("{binary} --version")).await?;
    let mut parts = text.split("---runbook---\n");
    let version = parts
        .next()
        .unwrap_or("")
        .lines()
        .find_map(|l| l.strip_prefix("etcd Version:"))
        .map(|v| v.trim().to_string())
        .filter(|v| EtcdVersion::parse(v).is_ok())
        .ok_or_else(|| format!("cannot read a version from `{binary} --version`"))?;
    // The unit's arguments first: etcd takes a flag given there over its variable.
    let mut words = service.exec_start.clone();
    let mut env = service.environment.clone();
    for file in parts {
        env.extend(crate::etcd::envfile::assignments(file));
    }
    words.extend(
        env.iter()
            .filter_map(|(k, v)| crate::etcd::envfile::flag_of(k, v)),
    );
    let env_file = service
        .env_files
        .first()
        .map(|f| f.trim_start_matches('-').to_string());
    Ok((
        version,
        words,
        Some((unit.to_string(), env_file)),
        control_plane,
    ))
}

/// What `systemctl cat` shows of a service: its command line, environment files and inline
/// environment (a later `ExecStart=` replaces an earlier one; an empty one clears it).
#[derive(Debug, Default, PartialEq, Eq)]
struct Unit {
    exec_start: Vec<String>,
    env_files: Vec<String>,
    environment: Vec<(String, String)>,
}

impl Unit {
    fn parse(text: &str) -> Unit {
        let mut u = Unit::default();
        // Continuation lines (`\` at the end) join the next one.
        let joined = text.replace("\\\n", " ");
        for line in joined.lines().map(str::trim) {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim();
            match key.trim() {
                "ExecStart" => {
                    u.exec_start = value
                        .trim_start_matches(['-', '@', '+', '!', ':'])
                        .split_whitespace()
                        .map(|w| w.trim_matches(['"', '\'']).to_string())
                        .collect();
                }
                "EnvironmentFile" if value.is_empty() => u.env_files.clear(),
                "EnvironmentFile" => u.env_files.push(value.to_string()),
                "Environment" => {
                    for word in value.split_whitespace() {
                        if let Some((k, v)) = word.trim_matches(['"', '\'']).split_once('=') {
                            u.environment.push((k.to_string(), v.to_string()));
                        }
                    }
                }
                _ => {}
            }
        }
        u
    }
}

async fn read_node(exec: &Ssh, n: &Node, dir: &str, unit: &str) -> Result<Found, String> {
    let (version, words, systemd, control_plane) = read_etcd(exec, n, dir, unit).await?;
    let name = flag(&words, "name")
        .ok_or("etcd has no --name")?
        .to_string();
    let peer = flag(&words, "initial-advertise-peer-urls")
        .ok_or("etcd has no --initial-advertise-peer-urls")?;
    let (scheme, address, peer_port) = url_parts(peer.split(',').next().unwrap_or(peer))
        .ok_or_else(|| format!("cannot read the peer URL {peer:?}"))?;
    let client = flag(&words, "advertise-client-urls").unwrap_or("");
    let client_port = url_parts(client.split(',').next().unwrap_or(client)).map_or(2379, |p| p.2);
    let tls = match (
        flag(&words, "trusted-ca-file"),
        flag(&words, "cert-file"),
        flag(&words, "key-file"),
    ) {
        (Some(ca), Some(cert), Some(key)) => {
            Some((ca.to_string(), cert.to_string(), key.to_string()))
        }
        _ => None,
    };
    let command = words.first().map(String::as_str).unwrap_or("etcd");
    let probe = exec
        .shell(
            Target::Node(n),
            &format!(
                "sh -c {} runbook-probe {}",
                quote(TOOL_PROBE),
                quote(command)
            ),
            &[],
            Duration::from_secs(60),
        )
        .await
        .map_err(|e| e.0)?;
    if !probe.success() {
        return Err(format!(
            "cannot look for etcdctl and etcdutl: {}",
            String::from_utf8_lossy(&probe.stderr).trim()
        ));
    }
    let probe = String::from_utf8_lossy(&probe.stdout);
    let want = EtcdVersion::parse(&version)
        .map_err(|e| format!("cannot read an etcd version from {version:?}: {e}"))?;
    let etcdctl = choose("etcdctl", want, &candidates(&probe, "etcdctl"));
    let etcdutl = want
        .has_etcdutl()
        .then(|| choose("etcdutl", want, &candidates(&probe, "etcdutl")));
    Ok(Found {
        name,
        address,
        version,
        data_dir: flag(&words, "data-dir")
            .unwrap_or("/var/lib/etcd")
            .to_string(),
        cluster_token: flag(&words, "initial-cluster-token")
            .filter(|t| *t != crate::inventory::resolve::DEFAULT_CLUSTER_TOKEN)
            .map(str::to_string),
        scheme,
        client_port,
        peer_port,
        tls,
        control_plane,
        unit: systemd,
        etcdctl,
        etcdutl,
    })
}

/// A node's runtime settings where they differ from the first node's (which the cluster
/// level carries): a static pod among systemd members says so explicitly.
fn node_runtime<'a>(f: &'a Found, first: &'a Found) -> RuntimeOut<'a> {
    let (mine, theirs) = (RuntimeOut::of(f), RuntimeOut::of(first));
    if mine == theirs {
        return RuntimeOut::default();
    }
    if mine.runtime.is_none() {
        return RuntimeOut {
            runtime: Some("static-pod"),
            ..RuntimeOut::default()
        };
    }
    mine
}

fn render(d: &Discover, found: &[Found]) -> String {
    let first = &found[0];
    fn tool(c: Option<&ToolChoice>) -> Option<&str> {
        match c {
            Some(ToolChoice::Use(p)) => Some(p.as_str()),
            _ => None,
        }
    }
    fn differs<'a>(mine: Option<&'a str>, theirs: Option<&str>) -> Option<&'a str> {
        mine.filter(|_| mine != theirs)
    }
    // The first node's tools for all; another node's own below, when they differ.
    let nodes = found
        .iter()
        .map(|f| {
            let mut roles = vec!["etcd"];
            if f.control_plane {
                roles.push("control-plane");
            }
            let etcd = NodeEtcdOut {
                version: differs(Some(&f.version), Some(&first.version)),
                data_dir: differs(Some(&f.data_dir), Some(&first.data_dir)),
                runtime: node_runtime(f, first),
                tls: f
                    .tls
                    .as_ref()
                    .filter(|t| Some(*t) != first.tls.as_ref())
                    .map(|(ca, cert, key)| TlsOut { ca, cert, key }),
                etcdctl: differs(tool(Some(&f.etcdctl)), tool(Some(&first.etcdctl))),
                etcdutl: differs(tool(f.etcdutl.as_ref()), tool(first.etcdutl.as_ref())),
            };
            FlowMap(NodeOut {
                name: &f.name,
                address: &f.address,
                roles: FlowSeq(roles),
                etcd: (!etcd.is_empty()).then_some(FlowMap(etcd)),
            })
        })
        .collect();
    let inv = InventoryOut {
        cluster: &d.cluster,
        etcd: EtcdOut {
            version: &first.version,
            data_dir: Some(&first.data_dir),
            manifests_dir: Some(&d.manifests_dir),
            runtime: RuntimeOut::of(first),
            scheme: Some(&first.scheme),
            client_port: Some(first.client_port),
            peer_port: Some(first.peer_port),
            tls: first
                .tls
                .as_ref()
                .map(|(ca, cert, key)| FlowMap(TlsOut { ca, cert, key })),
            cluster_token: first.cluster_token.as_deref(),
            etcdctl: tool(Some(&first.etcdctl)),
            etcdutl: tool(first.etcdutl.as_ref()),
        },
        ssh: ssh_out(d, None),
        nodes,
    };
    // A header says where the file came from and, for a node without a build of its etcd
    // version, what to fix (the same warnings go to stderr).
    let mut y = format!(
        "# Written by `runbook discover` from how {} run etcd ({}).\n",
        d.hosts.join(", "),
        if found.iter().all(|f| f.unit.is_none()) {
            "static pod manifests"
        } else if found.iter().all(|f| f.unit.is_some()) {
            "systemd units and their environment files"
        } else {
            "static pod manifests and systemd units"
        }
    );
    for f in found {
        for note in f.notes() {
            y.push_str(&format!("# warning: {note}\n"));
        }
    }
    y.push_str(&to_yaml(&inv));
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn v(s: &str) -> EtcdVersion {
        EtcdVersion::parse(s).unwrap()
    }

    fn c(path: &str, version: Option<&str>) -> Candidate {
        Candidate {
            path: path.into(),
            version: version.map(v),
        }
    }

    #[test]
    fn a_kubespray_unit_reads_as_its_command_line_and_environment() {
        let unit = Unit::parse(
            "# /etc/systemd/system/etcd.service\n[Unit]\nDescription=etcd\n[Service]\nType=notify\nEnvironmentFile=-/etc/etcd.env\nEnvironment=\"GOMAXPROCS=2\" ETCD_UNSUPPORTED_ARCH=arm64\nExecStart=\nExecStart=/usr/local/bin/etcd \\\n  --log-level=info\nRestart=always\n",
        );
        assert_eq!(
            unit,
            Unit {
                exec_start: vec!["/usr/local/bin/etcd".into(), "--log-level=info".into()],
                env_files: vec!["-/etc/etcd.env".into()],
                environment: vec![
                    ("GOMAXPROCS".into(), "2".into()),
                    ("ETCD_UNSUPPORTED_ARCH".into(), "arm64".into())
                ],
            }
        );
    }

    #[test]
    fn the_members_version_wins_over_the_first_on_path() {
        let found = [
            c("/usr/bin/etcdctl", Some("3.4.23")),
            c("/usr/local/bin/etcdctl", Some("3.5.9")),
            c("/opt/etcd/etcdctl", Some("3.5.1")),
        ];
        // The exact version first, then the first of the same minor.
        assert_eq!(
            choose("etcdctl", v("3.5.1"), &found),
            ToolChoice::Use("/opt/etcd/etcdctl".into())
        );
        assert_eq!(
            choose("etcdctl", v("3.5.4"), &found),
            ToolChoice::Use("/usr/local/bin/etcdctl".into())
        );
        assert_eq!(
            choose("etcdctl", v("3.4.30"), &found),
            ToolChoice::Use("/usr/bin/etcdctl".into())
        );
    }

    #[test]
    fn without_a_match_the_note_says_what_was_found_and_what_to_do() {
        let found = [
            c("/usr/bin/etcdutl", Some("3.4.23")),
            c("/usr/local/bin/etcdutl", None),
            c("/proc/77/root/usr/local/bin/etcdutl", Some("3.5.1")),
        ];
        let choice = choose("etcdutl", v("3.5.1"), &found);
        assert!(matches!(choice, ToolChoice::NoMatch { .. }), "{choice:?}");
        assert_eq!(
            choice.note("cp1").unwrap(),
            "cp1 has no etcdutl 3.5 for its etcd 3.5.1 (/usr/bin/etcdutl is 3.4.23, /usr/local/bin/etcdutl does not run); the etcd container has one (/usr/local/bin/etcdutl in its image): copy it out while etcd runs, e.g. cp /proc/$(pgrep -xo etcd)/root/usr/local/bin/etcdutl /usr/local/bin/etcdutl-3.5; install one and set etcd.etcdutl to it"
        );
        let none = choose("etcdutl", v("3.6.0"), &[]);
        assert!(
            none.note("cp2")
                .unwrap()
                .starts_with("cp2 has no etcdutl 3.6 for its etcd 3.6.0 (none was found);")
        );
        assert_eq!(ToolChoice::Use("/x".into()).note("cp1"), None);
    }

    /// The probe, run by sh as a node would: PATH first, then etcd's own directory; one line
    /// per real file, with its version.
    #[test]
    fn the_probe_finds_tools_on_path_and_beside_etcd() {
        let dir = tempfile::tempdir().unwrap();
        let tool = |sub: &str, name: &str, body: &str| {
            let d = dir.path().join(sub);
            std::fs::create_dir_all(&d).unwrap();
            let p = d.join(name);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        tool("path", "etcdctl", "echo 'etcdctl version: 3.4.23'");
        tool("etcd", "etcd", "exit 0");
        tool(
            "etcd",
            "etcdctl",
            "echo 'etcdctl version: 3.5.1'; echo 'API version: 3.5'",
        );
        tool("etcd", "etcdutl", "echo 'etcdutl version: 3.5.1'");
        tool("etcd", "broken", "exit 1");
        // A second name for etcd's own etcdctl, later on PATH.
        std::fs::create_dir(dir.path().join("path2")).unwrap();
        std::os::unix::fs::symlink(
            dir.path().join("etcd/etcdctl"),
            dir.path().join("path2/etcdctl"),
        )
        .unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(TOOL_PROBE)
            .arg("runbook-probe")
            .arg(dir.path().join("etcd/etcd"))
            .env(
                "PATH",
                format!(
                    "{}:{}:/usr/bin:/bin",
                    dir.path().join("path").display(),
                    dir.path().join("path2").display()
                ),
            )
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let probe = String::from_utf8(out.stdout).unwrap();
        // Only this test's files: the machine may have etcd tools of its own.
        let mine = |tool: &str| -> Vec<Candidate> {
            candidates(&probe, tool)
                .into_iter()
                .filter(|c| c.path.starts_with(&*dir.path().to_string_lossy()))
                .map(|c| Candidate {
                    path: c.path[dir.path().to_string_lossy().len()..].to_string(),
                    ..c
                })
                .collect()
        };
        // etcd's own etcdctl is listed once, under the first name found for it.
        assert_eq!(
            mine("etcdctl"),
            [
                c("/path/etcdctl", Some("3.4.23")),
                c("/path2/etcdctl", Some("3.5.1"))
            ]
        );
        assert_eq!(mine("etcdutl"), [c("/etcd/etcdutl", Some("3.5.1"))]);
        assert_eq!(
            choose("etcdctl", v("3.5.1"), &mine("etcdctl")),
            ToolChoice::Use("/path2/etcdctl".into())
        );
    }

    #[test]
    fn the_inventory_names_matching_tools_and_comments_on_missing_ones() {
        let d = Discover {
            hosts: vec!["10.0.0.11".into(), "10.0.0.12".into()],
            cluster: "prod".into(),
            user: "root".into(),
            port: 22,
            identity: None,
            known_hosts: None,
            ssh_config: None,
            manifests_dir: "/etc/kubernetes/manifests".into(),
            unit: "etcd.service".into(),
            out: None,
        };
        let node = |name: &str, address: &str, etcdutl: ToolChoice| Found {
            name: name.into(),
            address: address.into(),
            version: "3.5.1".into(),
            data_dir: "/var/lib/etcd".into(),
            cluster_token: None,
            scheme: "https".into(),
            client_port: 2379,
            peer_port: 2380,
            tls: Some((
                "/pki/ca.crt".into(),
                "/pki/c.crt".into(),
                "/pki/c.key".into(),
            )),
            control_plane: true,
            unit: None,
            etcdctl: ToolChoice::Use("/opt/etcd/etcdctl".into()),
            etcdutl: Some(etcdutl),
        };
        let mut cp3 = node(
            "cp3",
            "10.0.0.13",
            ToolChoice::Use("/opt/etcd/etcdutl".into()),
        );
        // A value YAML would misread unquoted (a comment mark) and a node-level override.
        cp3.data_dir = "/data/etcd #3: yes".into();
        cp3.control_plane = false;
        let found = [
            node(
                "cp1",
                "10.0.0.11",
                ToolChoice::Use("/opt/etcd/etcdutl".into()),
            ),
            node(
                "cp2",
                "10.0.0.12",
                choose(
                    "etcdutl",
                    v("3.5.1"),
                    &[c("/usr/bin/etcdutl", Some("3.4.23"))],
                ),
            ),
            cp3,
        ];
        let mut systemd = found.clone();
        let yaml = render(&d, &found);
        assert!(
            yaml.contains("  etcdctl: /opt/etcd/etcdctl\n  etcdutl: /opt/etcd/etcdutl\n"),
            "{yaml}"
        );
        // Kubespray's members, and one static pod among them.
        systemd[0].unit = Some(("etcd.service".into(), Some("/etc/etcd.env".into())));
        systemd[1].unit = systemd[0].unit.clone();
        systemd[0].cluster_token = Some("k8s_etcd".into());
        systemd[1].tls = Some((
            "/etc/ssl/etcd/ssl/ca.pem".into(),
            "/etc/ssl/etcd/ssl/member-cp2.pem".into(),
            "/etc/ssl/etcd/ssl/member-cp2-key.pem".into(),
        ));
        let sd = render(&d, &systemd);
        assert!(
            sd.contains("  runtime: systemd\n  unit: etcd.service\n  env_file: /etc/etcd.env\n"),
            "{sd}"
        );
        assert!(
            sd.contains("(static pod manifests and systemd units)"),
            "{sd}"
        );
        let sd_file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(sd_file.path(), &sd).unwrap();
        let inv = crate::inventory::load(sd_file.path(), &mut SourceMap::default())
            .unwrap_or_else(|e| panic!("{sd}\n{e:?}"));
        assert_eq!(inv.etcd.cluster_token, "k8s_etcd");
        assert_eq!(
            inv.nodes[1].etcd.tls.as_ref().map(|t| t.cert.as_str()),
            Some("/etc/ssl/etcd/ssl/member-cp2.pem"),
            "{sd}"
        );
        assert_eq!(
            inv.nodes[2].etcd.tls.as_ref().map(|t| t.cert.as_str()),
            Some("/pki/c.crt")
        );
        assert_eq!(
            inv.nodes[1].etcd.runtime,
            crate::inventory::model::Runtime::Systemd {
                unit: "etcd.service".into(),
                env_file: "/etc/etcd.env".into()
            }
        );
        assert_eq!(
            inv.nodes[2].etcd.runtime,
            crate::inventory::model::Runtime::StaticPod,
            "{sd}"
        );
        assert!(
            yaml.starts_with("# Written by `runbook discover` from how 10.0.0.11, 10.0.0.12 run etcd (static pod manifests).\n# warning: cp2 has no etcdutl 3.5 for its etcd 3.5.1 (/usr/bin/etcdutl is 3.4.23); install one and set etcd.etcdutl to it\ncluster: prod\n"),
            "{yaml}"
        );
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &yaml).unwrap();
        let inv = crate::inventory::load(file.path(), &mut SourceMap::default())
            .unwrap_or_else(|e| panic!("{yaml}\n{e:?}"));
        assert_eq!(inv.nodes[0].etcd.etcdutl, "/opt/etcd/etcdutl");
        assert_eq!(inv.nodes[2].etcd.data_dir, "/data/etcd #3: yes");
        assert_eq!(inv.nodes[2].roles, ["etcd"]);
        assert_eq!(inv.nodes[0].roles, ["etcd", "control-plane"]);
    }

    /// The throwaway inventory of the hosts given loads, whatever the ssh paths hold.
    #[test]
    fn the_bootstrap_inventory_loads() {
        let d = Discover {
            hosts: vec!["10.0.0.11".into(), "cp-2.example".into()],
            cluster: "prod".into(),
            user: "ops".into(),
            port: 2222,
            identity: Some("/home/ops/.ssh/id: \"lab\"".into()),
            known_hosts: None,
            ssh_config: None,
            manifests_dir: "/etc/kubernetes/manifests".into(),
            unit: "etcd.service".into(),
            out: None,
        };
        let yaml = bootstrap_inventory(&d);
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &yaml).unwrap();
        let inv = crate::inventory::load(file.path(), &mut SourceMap::default())
            .unwrap_or_else(|e| panic!("{yaml}\n{e:?}"));
        assert_eq!(inv.nodes[1].address, "cp-2.example");
        assert_eq!(inv.nodes[1].name, "host2");
        assert_eq!(inv.nodes[0].ssh.port, 2222);
        assert_eq!(
            inv.nodes[0].ssh.identity_file.as_deref(),
            Some("/home/ops/.ssh/id: \"lab\"")
        );
    }
}
