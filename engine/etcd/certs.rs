//! Each member's serving and peer certificates and when they expire, read two ways: from the
//! files its static pod manifest names (over SSH), and from what the member presents in a TLS
//! handshake on its client and peer ports (through SSH forwards). An expired certificate is
//! still read and reported: the handshake records the chain and is then abandoned, before any
//! byte of application data could be sent.
//!
//! The line each certificate gets (`line`) is also what the drill report reads back
//! (`parse_line`): both live here so they cannot drift apart.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::executor::{Executor, Target};
use crate::inventory::model::Node;
use crate::shell::quote;

/// kubeadm's directory for etcd's certificates, where the manifest and inventory do not say.
const KUBEADM_PKI: &str = "/etc/kubernetes/pki/etcd";
const DAY: i64 = 86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The client port's certificate (`--cert-file`).
    Serving,
    /// The peer port's certificate (`--peer-cert-file`).
    Peer,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Serving => "serving",
            Role::Peer => "peer",
        }
    }

    /// kubeadm's command that renews it.
    fn renew(self) -> &'static str {
        match self {
            Role::Serving => "kubeadm certs renew etcd-server",
            Role::Peer => "kubeadm certs renew etcd-peer",
        }
    }
}

/// Where a certificate was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Presented in a TLS handshake on this port (as the node sees it, e.g. `10.0.0.1:2380`).
    Tls(String),
    /// The file on the node.
    File(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Tls(at) => write!(f, "TLS {at}"),
            Source::File(path) => write!(f, "file {path}"),
        }
    }
}

/// One certificate of one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cert {
    pub node: String,
    pub role: Role,
    pub source: Source,
    pub subject: String,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
}

/// What `parse_der` reads of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub subject: String,
    pub not_before: i64,
    pub not_after: i64,
}

pub fn parse_der(der: &[u8]) -> Result<Facts, String> {
    let (_, c) =
        X509Certificate::from_der(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    Ok(Facts {
        subject: c.subject().to_string(),
        not_before: c.validity().not_before.timestamp(),
        not_after: c.validity().not_after.timestamp(),
    })
}

/// The first certificate of a PEM file (the leaf; a bundle's CA certificates follow it).
pub fn parse_pem(pem: &[u8]) -> Result<Facts, String> {
    for p in x509_parser::pem::Pem::iter_from_buffer(pem) {
        let p = p.map_err(|e| format!("not PEM: {e}"))?;
        if p.label == "CERTIFICATE" {
            return parse_der(&p.contents);
        }
    }
    Err("no CERTIFICATE block in it".into())
}

/// `2026-12-02 08:16:39 UTC`.
pub fn date(unix: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64);
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .replace('T', " ")
        .replace('Z', " UTC")
}

pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Whole days from `now` to the end of validity; once expired, minus the whole days since.
pub fn days_left(c: &Cert, now: i64) -> i64 {
    (c.not_after - now) / DAY
}

/// `certificate cp1 peer, file /etc/kubernetes/pki/etcd/peer.crt: expires 2027-12-02
/// 08:16:39 UTC (364 days left), CN=cp1`
pub fn line(c: &Cert, now: i64) -> String {
    let days = days_left(c, now);
    let when = if c.not_after <= now {
        format!("expired {} ({} days ago)", date(c.not_after), -days)
    } else {
        format!("expires {} ({days} days left)", date(c.not_after))
    };
    format!(
        "certificate {} {}, {}: {when}, {}",
        c.node,
        c.role.name(),
        c.source,
        c.subject
    )
}

/// A `line` read back, for the report's table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Row {
    pub node: String,
    pub role: String,
    /// `TLS 10.0.0.1:2380` or `file /path`.
    pub source: String,
    pub expires: String,
    pub expired: bool,
    /// Whole days left; once expired, minus the whole days since.
    pub days_left: i64,
}

pub fn parse_line(l: &str) -> Option<Row> {
    let rest = l.strip_prefix("certificate ")?;
    let (node, rest) = rest.split_once(' ')?;
    let (role, rest) = rest.split_once(", ")?;
    let (source, rest) = rest.split_once(": ")?;
    let (word, rest) = rest.split_once(' ')?;
    let (expires, rest) = rest.split_once(" (")?;
    let (n, rest) = rest.split_once(' ')?;
    let n: i64 = n.parse().ok()?;
    let (expired, days_left) = match (word, rest.starts_with("days ago")) {
        ("expires", false) => (false, n),
        ("expired", true) => (true, -n),
        _ => return None,
    };
    Some(Row {
        node: node.into(),
        role: role.into(),
        source: source.into(),
        expires: expires.into(),
        expired,
        days_left,
    })
}

/// What the certificates say to the run: the lines shown, warnings, refusals.
#[derive(Debug, Default, PartialEq)]
pub struct Verdict {
    pub lines: Vec<String>,
    pub warnings: Vec<String>,
    pub refusals: Vec<String>,
}

/// An expired certificate (or one not valid yet) refuses; one expiring within `warn_days`
/// warns. `notes` (certificates that could not be read) are warnings.
pub fn judge(certs: &[Cert], notes: &[String], now: i64, warn_days: u32) -> Verdict {
    let mut v = Verdict::default();
    for c in certs {
        v.lines.push(line(c, now));
        let what = format!(
            "{}: the {} certificate ({})",
            c.node,
            c.role.name(),
            c.source
        );
        let renew = format!(
            "hint: renew it on {} (`{}`), then restart etcd there",
            c.node,
            c.role.renew()
        );
        if c.not_after <= now {
            v.refusals.push(format!(
                "{what} expired {} ({} days ago); {renew}",
                date(c.not_after),
                -days_left(c, now)
            ));
        } else if c.not_before > now {
            v.refusals.push(format!(
                "{what} is not valid before {}: this machine's clock or the issuer's is wrong",
                date(c.not_before)
            ));
        } else if days_left(c, now) < i64::from(warn_days) {
            v.warnings.push(format!(
                "{what} expires {} ({} days left, under {warn_days}); {renew}",
                date(c.not_after),
                days_left(c, now)
            ));
        }
    }
    v.warnings.extend(notes.iter().cloned());
    v
}

/// The value of `--name=V` (or `--name V`) in an argv.
fn flag(words: &[String], name: &str) -> Option<String> {
    let eq = format!("--{name}=");
    words.iter().enumerate().find_map(|(i, w)| {
        w.strip_prefix(&eq).map(str::to_string).or_else(|| {
            (w == &format!("--{name}"))
                .then(|| words.get(i + 1).cloned())
                .flatten()
        })
    })
}

/// The member's certificate files: `--cert-file` and `--peer-cert-file` of its etcd.yaml;
/// where that does not say, `server.crt` and `peer.crt` beside the inventory's CA (kubeadm's
/// layout), else in kubeadm's directory.
pub fn cert_paths(node: &Node, manifest: Option<&[String]>) -> [(Role, String, bool); 2] {
    let dir = node
        .etcd
        .tls
        .as_ref()
        .and_then(|t| t.ca.rsplit_once('/').map(|(d, _)| d.to_string()))
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| KUBEADM_PKI.to_string());
    let pick = |flag_name: &str, file: &str| match manifest.and_then(|w| flag(w, flag_name)) {
        Some(p) => (p, true),
        None => (format!("{dir}/{file}"), false),
    };
    let (serving, s_named) = pick("cert-file", "server.crt");
    let (peer, p_named) = pick("peer-cert-file", "peer.crt");
    [
        (Role::Serving, serving, s_named),
        (Role::Peer, peer, p_named),
    ]
}

/// Records the chain the server presents, then refuses it: the handshake stops there, so
/// nothing is ever sent over a connection whose server was not verified.
#[derive(Debug)]
struct Recorder {
    chain: Mutex<Option<Vec<Vec<u8>>>>,
    schemes: Vec<SignatureScheme>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.as_ref().to_vec())
            .collect();
        *self.chain.lock().unwrap_or_else(|p| p.into_inner()) = Some(chain);
        Err(rustls::Error::General("certificate recorded".into()))
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("certificate recorded".into()))
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("certificate recorded".into()))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.clone()
    }
}

/// The leaf certificate (DER) a TLS server at `addr` presents. `name` is the SNI sent (etcd
/// does not choose a certificate by it).
pub async fn presented(addr: SocketAddr, name: &str) -> Result<Vec<u8>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let recorder = Arc::new(Recorder {
        chain: Mutex::new(None),
        schemes: provider
            .signature_verification_algorithms
            .supported_schemes(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let server = ServerName::try_from(name.to_string()).map_err(|e| format!("{name}: {e}"))?;
    let handshake = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(server, tcp)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    };
    let outcome = tokio::time::timeout(Duration::from_secs(10), handshake)
        .await
        .unwrap_or_else(|_| Err("no TLS handshake within 10 s".into()));
    let chain = recorder
        .chain
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    match (chain, outcome) {
        (Some(chain), _) => chain
            .into_iter()
            .next()
            .ok_or_else(|| "an empty chain".into()),
        (None, Err(e)) => Err(e),
        (None, Ok(())) => Err("no certificate presented".into()),
    }
}

/// A file on the node, or `None` when it does not exist.
async fn read_file<E: Executor + ?Sized>(
    exec: &E,
    node: &Node,
    path: &str,
) -> Result<Option<Vec<u8>>, String> {
    let q = quote(path);
    let out = exec
        .shell(
            Target::Node(node),
            &format!("if [ -e {q} ]; then cat -- {q}; else echo absent >&2; exit 3; fi"),
            &[],
            Duration::from_secs(30),
        )
        .await
        .map_err(|e| e.0)?;
    match out.code {
        Some(0) => Ok(Some(out.stdout)),
        Some(3) => Ok(None),
        _ => Err(format!(
            "cannot read {path} on {}: {}",
            node.name,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

/// Every certificate of one member that could be read, and notes on those that could not.
pub async fn read<E: Executor + ?Sized>(exec: &E, node: &Node) -> (Vec<Cert>, Vec<String>) {
    let mut certs = Vec::new();
    let mut notes = Vec::new();
    let manifest_path = format!("{}/etcd.yaml", node.etcd.manifests_dir);
    let argv = match &node.etcd.runtime {
        // A unit's flags: its environment file's ETCD_* settings.
        crate::inventory::model::Runtime::Systemd { env_file, .. } => {
            match read_file(exec, node, env_file).await {
                Ok(Some(text)) => Some(super::envfile::flags(&String::from_utf8_lossy(&text))),
                Ok(None) => None,
                Err(e) => {
                    notes.push(e);
                    None
                }
            }
        }
        crate::inventory::model::Runtime::StaticPod => {
            match read_file(exec, node, &manifest_path).await {
                Ok(Some(text)) => {
                    match serde_saphyr::from_slice::<runbook_shared::pod::StaticPod>(&text)
                        .map_err(|e| e.to_string())
                        .and_then(|p| p.first())
                    {
                        Ok((_, argv)) => Some(argv),
                        Err(e) => {
                            notes.push(format!(
                        "{}: {manifest_path} is not a pod manifest ({e}); certificate paths from the inventory",
                        node.name
                    ));
                            None
                        }
                    }
                }
                Ok(None) => None,
                Err(e) => {
                    notes.push(e);
                    None
                }
            }
        }
    };
    let mut push = |role: Role, source: Source, got: Result<Facts, String>| match got {
        Ok(f) => certs.push(Cert {
            node: node.name.clone(),
            role,
            source,
            subject: f.subject,
            not_before: f.not_before,
            not_after: f.not_after,
        }),
        Err(e) => notes.push(format!(
            "{}: the {} certificate ({source}) was not read: {e}",
            node.name,
            role.name()
        )),
    };
    for (role, path, named) in cert_paths(node, argv.as_deref()) {
        match read_file(exec, node, &path).await {
            Ok(Some(pem)) => push(role, Source::File(path), parse_pem(&pem)),
            // A default path that is not there says nothing (etcd may keep them elsewhere);
            // a path etcd is started with that is not there is worth a word.
            Ok(None) if !named => {}
            Ok(None) => push(role, Source::File(path), Err("no such file".into())),
            Err(e) => push(role, Source::File(path), Err(e)),
        }
    }
    // Over TLS: the client port on the node's loopback, the peer port on its peer address.
    if node.etcd.scheme == "https" {
        let at = format!("127.0.0.1:{}", node.etcd.client_port);
        let got = match exec.tunnel(node, node.etcd.client_port).await {
            Ok(addr) => presented(addr, "127.0.0.1").await,
            Err(e) => Err(e.0),
        };
        push(
            Role::Serving,
            Source::Tls(at),
            got.and_then(|d| parse_der(&d)),
        );
    }
    if node.peer_url().starts_with("https://") {
        let host = node.address.as_str();
        let at = if host.contains(':') {
            format!("[{host}]:{}", node.etcd.peer_port)
        } else {
            format!("{host}:{}", node.etcd.peer_port)
        };
        let got = match exec.tunnel_to(node, host, node.etcd.peer_port).await {
            Ok(addr) => presented(addr, host).await,
            Err(e) => Err(e.0),
        };
        push(Role::Peer, Source::Tls(at), got.and_then(|d| parse_der(&d)));
    }
    (certs, notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(not_before: i64, not_after: i64) -> Cert {
        Cert {
            node: "cp2".into(),
            role: Role::Peer,
            source: Source::File("/etc/kubernetes/pki/etcd/peer.crt".into()),
            subject: "CN=cp2".into(),
            not_before,
            not_after,
        }
    }

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn expired_refuses_with_node_file_date_and_hint() {
        let v = judge(&[cert(NOW - 400 * DAY, NOW - 3 * DAY)], &[], NOW, 30);
        assert_eq!(v.refusals.len(), 1, "{v:?}");
        let r = &v.refusals[0];
        assert!(r.starts_with("cp2: the peer certificate (file /etc/kubernetes/pki/etcd/peer.crt) expired 2027-01-12"), "{r}");
        assert!(
            r.contains("(3 days ago)") && r.contains("kubeadm certs renew etcd-peer"),
            "{r}"
        );
        assert!(v.warnings.is_empty());
    }

    #[test]
    fn close_to_expiry_warns_and_far_is_quiet() {
        let v = judge(&[cert(NOW - DAY, NOW + 10 * DAY + 5)], &[], NOW, 30);
        assert!(v.refusals.is_empty());
        assert_eq!(v.warnings.len(), 1);
        assert!(
            v.warnings[0].contains("(10 days left, under 30)"),
            "{:?}",
            v.warnings
        );
        let v = judge(&[cert(NOW - DAY, NOW + 365 * DAY)], &[], NOW, 30);
        assert!(v.refusals.is_empty() && v.warnings.is_empty(), "{v:?}");
        // 0 turns the warning off; expiry still refuses.
        let v = judge(&[cert(NOW - DAY, NOW + 10 * DAY)], &[], NOW, 0);
        assert!(v.warnings.is_empty());
    }

    #[test]
    fn not_yet_valid_refuses() {
        let v = judge(&[cert(NOW + 3600, NOW + 365 * DAY)], &[], NOW, 30);
        assert_eq!(v.refusals.len(), 1);
        assert!(
            v.refusals[0].contains("is not valid before"),
            "{:?}",
            v.refusals
        );
    }

    #[test]
    fn lines_read_back() {
        for (c, days) in [
            (cert(NOW - DAY, NOW + 365 * DAY + 60), 365),
            (cert(NOW - 400 * DAY, NOW - 3 * DAY), -3),
            // Expired hours ago: 0 whole days, still expired.
            (cert(NOW - 400 * DAY, NOW - 36_000), 0),
            (
                Cert {
                    role: Role::Serving,
                    source: Source::Tls("10.0.0.2:2379".into()),
                    ..cert(NOW - DAY, NOW + 100)
                },
                0,
            ),
        ] {
            let l = line(&c, NOW);
            let row = parse_line(&l).unwrap_or_else(|| panic!("{l}"));
            assert_eq!(row.node, "cp2");
            assert_eq!(row.role, c.role.name());
            assert_eq!(row.source, c.source.to_string());
            assert_eq!(row.expires, date(c.not_after));
            assert_eq!(row.days_left, days, "{l}");
            assert_eq!(row.expired, c.not_after <= NOW, "{l}");
        }
        assert_eq!(parse_line("cp1: member 1 etcd 3.6.5"), None);
    }

    #[test]
    fn paths_from_the_manifest_else_beside_the_ca() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/kubeadm-ha-3.yaml");
        let inv = crate::inventory::load(&path, &mut Default::default())
            .unwrap_or_else(|_| panic!("{} loads", path.display()));
        let node = &inv.nodes[0];
        let argv: Vec<String> = [
            "etcd",
            "--cert-file=/pki/s.crt",
            "--peer-cert-file",
            "/pki/p.crt",
        ]
        .map(String::from)
        .to_vec();
        let [s, p] = cert_paths(node, Some(&argv));
        assert_eq!(
            (s.1.as_str(), s.2, p.1.as_str(), p.2),
            ("/pki/s.crt", true, "/pki/p.crt", true)
        );
        let [s, p] = cert_paths(node, None);
        assert!(
            !s.2 && s.1.ends_with("/server.crt") && p.1.ends_with("/peer.crt"),
            "{s:?} {p:?}"
        );
    }
}
