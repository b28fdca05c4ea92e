//! Real etcd and Kubernetes binaries for the lab, built from their published Go modules and
//! cached by version.
//!
//! Each build is a small Go module of the lab's (`go/<name>/go.mod` and its committed
//! `go.sum`, embedded in this binary) that names the upstream commands as `tool`s: `go build`
//! then fetches exactly the pinned module versions through the Go module proxy. The result
//! lands in `<cache>/lab/<name>-<version>/` (`$RUNBOOK_CACHE_DIR`, else `$XDG_CACHE_HOME/runbook`,
//! else `~/.cache/runbook`), built into a temporary directory beside it and renamed into place
//! only when every binary works, under a lock, so parallel labs and CI runs build once.
//! `build.json` in that directory records what it was built from; a changed `go.sum` rebuilds.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{log_tail, progress};

/// One Go module of the lab and the commands it builds.
pub struct GoBuild {
    /// Cache directory stem: `etcd` or `kubernetes`.
    name: &'static str,
    /// The upstream module whose version names the build (read from go.mod).
    version_of: &'static str,
    go_mod: &'static str,
    go_sum: &'static str,
    /// (file name, Go package) of every binary.
    binaries: &'static [(&'static str, &'static str)],
    /// Version stamps the upstream release build sets with -ldflags ({version} = v1.2.3).
    ldflags: &'static [&'static str],
}

const ETCD_BINARIES: &[(&str, &str)] = &[
    ("etcd", "go.etcd.io/etcd/server/v3"),
    ("etcdctl", "go.etcd.io/etcd/etcdctl/v3"),
    ("etcdutl", "go.etcd.io/etcd/etcdutl/v3"),
];

/// The newest etcd 3.6.
pub const ETCD_3_6: GoBuild = GoBuild {
    name: "etcd",
    version_of: "go.etcd.io/etcd/server/v3",
    go_mod: include_str!("go/etcd-3.6/go.mod"),
    go_sum: include_str!("go/etcd-3.6/go.sum"),
    binaries: ETCD_BINARIES,
    ldflags: &[],
};

/// The newest etcd 3.5 (with `--bump-revision` and `--mark-compacted`).
pub const ETCD_3_5: GoBuild = GoBuild {
    name: "etcd",
    version_of: "go.etcd.io/etcd/server/v3",
    go_mod: include_str!("go/etcd-3.5/go.mod"),
    go_sum: include_str!("go/etcd-3.5/go.sum"),
    binaries: ETCD_BINARIES,
    ldflags: &[],
};

/// kube-apiserver, kube-controller-manager, kube-scheduler and kubectl of a release that
/// ships etcd 3.6.
pub const KUBERNETES: GoBuild = GoBuild {
    name: "kubernetes",
    version_of: "k8s.io/kubernetes",
    go_mod: include_str!("go/kubernetes/go.mod"),
    go_sum: include_str!("go/kubernetes/go.sum"),
    binaries: &[
        ("kube-apiserver", "k8s.io/kubernetes/cmd/kube-apiserver"),
        (
            "kube-controller-manager",
            "k8s.io/kubernetes/cmd/kube-controller-manager",
        ),
        ("kube-scheduler", "k8s.io/kubernetes/cmd/kube-scheduler"),
        ("kubectl", "k8s.io/kubernetes/cmd/kubectl"),
    ],
    // Without them every component reports v0.0.0-master, and kubectl warns about skew.
    ldflags: &[
        "k8s.io/component-base/version.gitVersion={version}",
        "k8s.io/component-base/version.gitMajor={major}",
        "k8s.io/component-base/version.gitMinor={minor}",
        "k8s.io/component-base/version.gitTreeState=clean",
        "k8s.io/client-go/pkg/version.gitVersion={version}",
        "k8s.io/client-go/pkg/version.gitMajor={major}",
        "k8s.io/client-go/pkg/version.gitMinor={minor}",
    ],
};

/// What a finished build directory was made from.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct BuildRecord {
    name: String,
    version: String,
    go_sum_sha256: String,
    go_version: String,
    seconds: f64,
}

impl GoBuild {
    /// The pinned upstream version without its `v`, e.g. "3.6.16" or "1.34.4".
    pub fn version(&self) -> String {
        self.go_mod
            .lines()
            .map(str::trim)
            .map(|l| l.strip_prefix("require ").unwrap_or(l))
            .find_map(|l| {
                let (module, version) = l.split_once(' ')?;
                (module == self.version_of).then(|| version.trim())
            })
            .and_then(|v| v.split_whitespace().next())
            .map(|v| v.trim_start_matches('v').to_string())
            .unwrap_or_else(|| panic!("go.mod of {} requires no {}", self.name, self.version_of))
    }

    fn dir_name(&self) -> String {
        format!("{}-{}", self.name, self.version())
    }

    fn record(&self, go_version: &str, seconds: f64) -> BuildRecord {
        BuildRecord {
            name: self.name.to_string(),
            version: self.version(),
            go_sum_sha256: runbook_shared::hex(&Sha256::digest(self.go_sum.as_bytes())),
            go_version: go_version.to_string(),
            seconds,
        }
    }

    /// Whether `dir` holds a complete build of exactly this module.
    fn is_built(&self, dir: &Path) -> bool {
        let Ok(text) = std::fs::read_to_string(dir.join("build.json")) else {
            return false;
        };
        let Ok(found) = serde_json::from_str::<BuildRecord>(&text) else {
            return false;
        };
        let want = self.record("", 0.0);
        found.name == want.name
            && found.version == want.version
            && found.go_sum_sha256 == want.go_sum_sha256
            && self
                .binaries
                .iter()
                .all(|(bin, _)| super::deps::is_executable(&dir.join(bin)))
    }

    /// The directory holding this build's binaries, building it first when needed.
    pub fn ensure(&self, lab: &str) -> anyhow::Result<PathBuf> {
        let root = cache_root()?.join("lab");
        let dir = root.join(self.dir_name());
        if self.is_built(&dir) {
            return Ok(dir);
        }
        std::fs::create_dir_all(&root)
            .with_context(|| format!("cannot create the cache directory {}", root.display()))?;
        // One builder per version at a time; whoever waited finds the build done.
        let lock_path = root.join(format!(".{}.lock", self.dir_name()));
        let lock_file = File::create(&lock_path)
            .with_context(|| format!("cannot create {}", lock_path.display()))?;
        let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| anyhow!(e))
            .with_context(|| format!("cannot lock {}", lock_path.display()))?;
        if self.is_built(&dir) {
            return Ok(dir);
        }
        self.build(lab, &root, &dir)?;
        Ok(dir)
    }

    fn build(&self, lab: &str, root: &Path, dir: &Path) -> anyhow::Result<()> {
        let go = find_go()?;
        let go_version = run_text(Command::new(&go).arg("version"))
            .context("`go version` failed")?
            .trim()
            .to_string();
        progress(
            lab,
            &format!(
                "building {} {} from its Go modules with {go_version} (once; cached in {})",
                self.name,
                self.version(),
                dir.display()
            ),
        );
        let started = Instant::now();
        // A failed build keeps its work directory (the error names its log) until the next
        // build of this version, which runs under the lock and clears every earlier one.
        let prefix = format!(".build-{}-", self.dir_name());
        if let Ok(entries) = std::fs::read_dir(root) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    std::fs::remove_dir_all(e.path())
                        .with_context(|| format!("cannot clear {}", e.path().display()))?;
                }
            }
        }
        // Beside the cache (same filesystem, so the rename below is atomic); removed when it
        // is dropped, unless a failure keeps it below for its log.
        let work = tempfile::Builder::new()
            .prefix(&prefix)
            .tempdir_in(root)
            .with_context(|| format!("cannot create a build directory in {}", root.display()))?;
        let (src, bin) = (work.path().join("src"), work.path().join("bin"));
        let log_path = work.path().join("build.log");
        if let Err(e) = self.build_in(&go, &src, &bin, &log_path) {
            let _ = work.keep();
            return Err(e);
        }
        let seconds = started.elapsed().as_secs_f64();
        let record = self.record(&go_version, seconds);
        let text = serde_json::to_string_pretty(&record).context("cannot encode build.json")?;
        std::fs::write(bin.join("build.json"), text + "\n").context("cannot write build.json")?;
        if dir.exists() {
            std::fs::remove_dir_all(dir)
                .with_context(|| format!("cannot remove the stale build {}", dir.display()))?;
        }
        std::fs::rename(&bin, dir)
            .with_context(|| format!("cannot move the build into {}", dir.display()))?;
        drop(work);
        progress(
            lab,
            &format!("built {} {} in {seconds:.0}s", self.name, self.version()),
        );
        Ok(())
    }

    /// Writes the module into `src` and builds every binary into `bin`, logging to `log_path`.
    fn build_in(&self, go: &Path, src: &Path, bin: &Path, log_path: &Path) -> anyhow::Result<()> {
        for d in [src, bin] {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
        }
        std::fs::write(src.join("go.mod"), self.go_mod).context("cannot write go.mod")?;
        std::fs::write(src.join("go.sum"), self.go_sum).context("cannot write go.sum")?;
        let ldflags = self.ldflags();
        for (name, package) in self.binaries {
            let log = File::options()
                .create(true)
                .append(true)
                .open(log_path)
                .with_context(|| format!("cannot open {}", log_path.display()))?;
            let mut cmd = Command::new(go);
            cmd.current_dir(src)
                .args(["build", "-trimpath", "-ldflags", &ldflags, "-o"])
                .arg(bin.join(name))
                .arg(package)
                // The committed go.sum is the pin: nothing may change it during a build.
                .env("GOFLAGS", "-mod=readonly -modcacherw")
                .env("CGO_ENABLED", "0")
                .stdin(Stdio::null())
                .stdout(log.try_clone().context("cannot duplicate a log handle")?)
                .stderr(log);
            let status = cmd
                .status()
                .with_context(|| format!("cannot run {}", go.display()))?;
            if !status.success() {
                bail!(
                    "building {name} ({package}) failed ({status}); {}:\n{}",
                    log_path.display(),
                    log_tail(log_path, 20)
                );
            }
        }
        Ok(())
    }

    fn ldflags(&self) -> String {
        let version = self.version();
        let mut parts = version.split('.');
        let major = parts.next().unwrap_or_default();
        let minor = parts.next().unwrap_or_default();
        let mut flags = vec!["-s".to_string(), "-w".to_string()];
        for f in self.ldflags {
            flags.push("-X".to_string());
            flags.push(
                f.replace("{version}", &format!("v{version}"))
                    .replace("{major}", major)
                    .replace("{minor}", minor),
            );
        }
        flags.join(" ")
    }
}

/// `$RUNBOOK_CACHE_DIR`, `$XDG_CACHE_HOME/runbook` or `~/.cache/runbook`.
fn cache_root() -> anyhow::Result<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("RUNBOOK_CACHE_DIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = var("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(dir).join("runbook"));
    }
    let home = var("HOME").ok_or_else(|| {
        anyhow!(
            "neither RUNBOOK_CACHE_DIR, XDG_CACHE_HOME nor HOME is set: no place to cache builds"
        )
    })?;
    Ok(PathBuf::from(home).join(".cache/runbook"))
}

/// The Go toolchain: `go` on PATH, else where its installers put it.
fn find_go() -> anyhow::Result<PathBuf> {
    let on_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("go")).collect())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(["/usr/local/go/bin/go", "/usr/lib/go/bin/go"].map(PathBuf::from))
        .find(|p| super::deps::is_executable(p))
        .ok_or_else(|| {
            anyhow!(
                "the lab builds etcd 3.5/3.6 and Kubernetes from their Go modules, and no `go` was found \
                 (on PATH, /usr/local/go/bin, /usr/lib/go/bin); install Go (1.26, or any Go from 1.21 on, which fetches the toolchain the modules name)"
            )
        })
}

fn run_text(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if !out.status.success() {
        bail!("{}", super::output_summary(&out));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_come_from_the_pinned_modules() {
        assert!(ETCD_3_6.version().starts_with("3.6."));
        assert!(ETCD_3_5.version().starts_with("3.5."));
        let k8s = KUBERNETES.version();
        let minor: u32 = k8s.split('.').nth(1).unwrap().parse().unwrap();
        // 1.34 is the first release whose kubeadm ships etcd 3.6.
        assert!(k8s.starts_with("1.") && minor >= 34, "{k8s}");
    }

    #[test]
    fn kubernetes_staging_modules_follow_its_version() {
        let minor = KUBERNETES.version().replacen("1.", "0.", 1);
        let replaces: Vec<&str> = KUBERNETES
            .go_mod
            .lines()
            .filter(|l| l.contains(" => "))
            .collect();
        assert!(replaces.len() > 20);
        for l in replaces {
            assert!(l.trim_end().ends_with(&format!(" v{minor}")), "{l}");
        }
    }

    #[test]
    fn ldflags_stamp_the_release() {
        let f = KUBERNETES.ldflags();
        assert!(f.contains(&format!(
            "k8s.io/component-base/version.gitVersion=v{}",
            KUBERNETES.version()
        )));
        assert!(!f.contains('{'));
    }
}
