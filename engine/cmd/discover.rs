//! `runbook discover HOST...`: read each control-plane node's etcd static pod manifest over
//! SSH and write the inventory it describes — names, addresses, data dir, URLs, certificate
//! paths, the etcd version from the image — checked by the same loader plans use.

use std::fmt::Write as _;
use std::time::Duration;

use super::{EXIT_INVALID, EXIT_OK, usage_error};
use crate::cli::DiscoverArgs as Discover;
use crate::diag::SourceMap;
use crate::executor::ssh::Ssh;
use crate::executor::{Executor, Target};
use crate::inventory::model::Node;
use crate::shell::quote;
use crate::yaml::LoadFailure;

/// What one node's manifest says.
struct Found {
    name: String,
    address: String,
    version: String,
    data_dir: String,
    scheme: String,
    client_port: u16,
    peer_port: u16,
    tls: Option<(String, String, String)>,
    control_plane: bool,
    etcdctl: Option<String>,
    etcdutl: Option<String>,
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

fn bootstrap_inventory(d: &Discover) -> String {
    let mut y = String::from("cluster: discovering\netcd: { version: \"3.5.0\" }\nssh:\n");
    let _ = writeln!(
        y,
        "  user: {}\n  port: {}\n  connect_timeout: 10",
        quote_yaml(&d.user),
        d.port
    );
    ssh_files(&mut y, d);
    y.push_str("nodes:\n");
    for (i, h) in d.hosts.iter().enumerate() {
        let _ = writeln!(
            y,
            "  - {{ name: host{}, address: {}, roles: [etcd] }}",
            i + 1,
            quote_yaml(h)
        );
    }
    y
}

/// The ssh files given on the command line, as inventory `ssh:` fields.
fn ssh_files(y: &mut String, d: &Discover) {
    for (k, v) in [
        ("identity_file", &d.identity),
        ("known_hosts", &d.known_hosts),
        ("config_file", &d.ssh_config),
    ] {
        if let Some(p) = v {
            let _ = writeln!(y, "  {k}: {}", quote_yaml(&p.display().to_string()));
        }
    }
}

fn quote_yaml(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

pub fn run(d: &Discover) -> u8 {
    if d.hosts.is_empty() {
        return usage_error(
            "discover needs at least one host",
            &"no HOST was given",
            None,
        );
    }
    // The hosts become a throwaway inventory, so SSH settings are checked like any other.
    let tmp = match tempfile::Builder::new()
        .prefix("runbook-discover")
        .suffix(".yaml")
        .tempfile()
    {
        Ok(t) => t,
        Err(e) => return usage_error("cannot create a temporary file", &e, None),
    };
    if let Err(e) = std::fs::write(tmp.path(), bootstrap_inventory(d)) {
        return usage_error("cannot write a temporary file", &e, None);
    }
    let mut sources = SourceMap::default();
    let boot = match crate::inventory::load(tmp.path(), &mut sources) {
        Ok(i) => i,
        Err(LoadFailure::Invalid(ds)) => {
            eprint!("{}", ds.render(&sources));
            return usage_error(
                "the hosts or SSH settings are not valid",
                &"see above",
                None,
            );
        }
        Err(LoadFailure::Unreadable { path, error }) => {
            return usage_error(&format!("cannot read {path}"), &error, None);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return usage_error("cannot start the async runtime", &e, None),
    };
    let control = match crate::executor::ssh::private_control_dir("discover") {
        Ok(d) => d,
        Err(e) => return usage_error("cannot create the SSH control directory", &e, None),
    };
    let found = rt.block_on(async {
        let exec = Ssh::new(control.path().to_path_buf());
        let nodes: Vec<&Node> = boot.nodes.iter().collect();
        let failed = exec.connect(&nodes).await;
        let result = if failed.is_empty() {
            let mut out = Vec::new();
            let mut errors = Vec::new();
            for n in &nodes {
                match read_node(&exec, n, &d.manifests_dir).await {
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
    let found = match found {
        Ok(f) => f,
        Err(errors) => {
            for e in errors {
                eprintln!("error: {e}");
            }
            return EXIT_INVALID;
        }
    };
    for (n, f) in boot.nodes.iter().zip(&found) {
        if n.address != f.address {
            eprintln!(
                "warning: {} advertises its peer URL on {}: the inventory uses that address (restores compute member IDs from it); make sure ssh reaches it",
                n.address, f.address
            );
        }
    }
    let yaml = render(d, &found);
    // The result must load like any inventory before anyone relies on it.
    let check = tmp.path().with_extension("check.yaml");
    let loaded = std::fs::write(&check, &yaml)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            crate::inventory::load(&check, &mut SourceMap::default()).map_err(|e| match e {
                LoadFailure::Invalid(ds) => ds.render(&SourceMap::default()),
                LoadFailure::Unreadable { error, .. } => error.to_string(),
            })
        });
    let _ = std::fs::remove_file(&check);
    if let Err(e) = loaded {
        eprintln!("error: the discovered inventory does not load:\n{e}");
        return super::print_out(&yaml).err().unwrap_or(EXIT_INVALID);
    }
    match &d.out {
        None => {
            if let Err(code) = super::print_out(&yaml) {
                return code;
            }
        }
        Some(p) => {
            if let Err(e) = std::fs::write(p, &yaml) {
                return usage_error(&format!("cannot write {}", p.display()), &e, None);
            }
            eprintln!("wrote {} ({} nodes)", p.display(), found.len());
        }
    }
    EXIT_OK
}

async fn read_node(exec: &Ssh, n: &Node, dir: &str) -> Result<Found, String> {
    let script = format!(
        "cat -- {m}/etcd.yaml && echo '---runbook---' && {{ test -e {m}/kube-apiserver.yaml && echo control-plane; true; }} && echo '---runbook---' && {{ command -v etcdctl; true; }} && echo '---runbook---' && {{ command -v etcdutl; true; }}",
        m = quote(dir)
    );
    let out = exec
        .shell(Target::Node(n), &script, &[], Duration::from_secs(30))
        .await
        .map_err(|e| e.0)?;
    if !out.success() {
        return Err(format!(
            "cannot read {dir}/etcd.yaml: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let parts: Vec<&str> = text.split("---runbook---\n").collect();
    let manifest = parts.first().copied().unwrap_or("");
    let file: std::sync::Arc<str> = format!("{}:{dir}/etcd.yaml", n.address).into();
    let pod: crate::pod::StaticPod =
        crate::yaml::parse(manifest, &file, "manifest").map_err(|ds| {
            format!(
                "{dir}/etcd.yaml is not a pod manifest: {}",
                ds.render(&SourceMap::default())
            )
        })?;
    let (image, words) = pod.first()?;
    let name = flag(&words, "name")
        .ok_or("etcd has no --name")?
        .to_string();
    let peer = flag(&words, "initial-advertise-peer-urls")
        .ok_or("etcd has no --initial-advertise-peer-urls")?;
    let (scheme, address, peer_port) = url_parts(peer.split(',').next().unwrap_or(peer))
        .ok_or_else(|| format!("cannot read the peer URL {peer:?}"))?;
    let client = flag(&words, "advertise-client-urls").unwrap_or("");
    let client_port = url_parts(client.split(',').next().unwrap_or(client)).map_or(2379, |p| p.2);
    let version = image
        .rsplit_once(':')
        .map(|(_, tag)| {
            tag.trim_start_matches('v')
                .split('-')
                .next()
                .unwrap_or("")
                .to_string()
        })
        .filter(|v| crate::inventory::version::EtcdVersion::parse(v).is_some())
        .ok_or_else(|| format!("cannot read an etcd version from the image {image:?}"))?;
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
    let line = |k: usize| {
        parts
            .get(k)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    Ok(Found {
        name,
        address,
        version,
        data_dir: flag(&words, "data-dir")
            .unwrap_or("/var/lib/etcd")
            .to_string(),
        scheme,
        client_port,
        peer_port,
        tls,
        control_plane: line(1).is_some(),
        etcdctl: line(2),
        etcdutl: line(3),
    })
}

fn render(d: &Discover, found: &[Found]) -> String {
    let first = &found[0];
    let mut y = String::new();
    let _ = writeln!(
        y,
        "# Written by `runbook discover` from the etcd static pod manifests of {}.",
        d.hosts.join(", ")
    );
    let _ = writeln!(y, "cluster: {}", quote_yaml(&d.cluster));
    y.push_str("etcd:\n");
    let _ = writeln!(y, "  version: {}", quote_yaml(&first.version));
    let _ = writeln!(y, "  data_dir: {}", quote_yaml(&first.data_dir));
    let _ = writeln!(y, "  manifests_dir: {}", quote_yaml(&d.manifests_dir));
    let _ = writeln!(
        y,
        "  scheme: {}\n  client_port: {}\n  peer_port: {}",
        first.scheme, first.client_port, first.peer_port
    );
    if let Some((ca, cert, key)) = &first.tls {
        let _ = writeln!(
            y,
            "  tls: {{ ca: {}, cert: {}, key: {} }}",
            quote_yaml(ca),
            quote_yaml(cert),
            quote_yaml(key)
        );
    }
    if let Some(p) = &first.etcdctl {
        let _ = writeln!(y, "  etcdctl: {}", quote_yaml(p));
    }
    if let Some(p) = &first.etcdutl {
        let _ = writeln!(y, "  etcdutl: {}", quote_yaml(p));
    }
    y.push_str("ssh:\n");
    let _ = writeln!(y, "  user: {}\n  port: {}", quote_yaml(&d.user), d.port);
    ssh_files(&mut y, d);
    y.push_str("nodes:\n");
    for f in found {
        let roles = if f.control_plane {
            "[etcd, control-plane]"
        } else {
            "[etcd]"
        };
        let _ = write!(
            y,
            "  - {{ name: {}, address: {}, roles: {roles}",
            quote_yaml(&f.name),
            quote_yaml(&f.address)
        );
        // Only what differs from the cluster-wide settings is written per node.
        let mut etcd = Vec::new();
        if f.version != first.version {
            etcd.push(format!("version: {}", quote_yaml(&f.version)));
        }
        if f.data_dir != first.data_dir {
            etcd.push(format!("data_dir: {}", quote_yaml(&f.data_dir)));
        }
        if !etcd.is_empty() {
            let _ = write!(y, ", etcd: {{ {} }}", etcd.join(", "));
        }
        y.push_str(" }\n");
    }
    y
}
