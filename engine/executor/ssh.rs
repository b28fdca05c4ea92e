//! The SSH executor: one multiplexed OpenSSH master per host for the whole run.
//!
//! The master is the system `ssh`, so `~/.ssh/config` (ProxyJump, ciphers, agents) applies as
//! it does for the operator's own shell. Host keys are checked strictly against the
//! inventory's known_hosts. Commands run as `sh -c` whatever the login shell is.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::join_all;
use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder, Stdio};
use openssh_sftp_client::{Sftp, SftpOptions, metadata::Permissions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use sha2::Digest;
use tokio::io::AsyncReadExt;

use super::local::Local;
use super::{ExecError, Executor, Outcome, Target, expand_home, timed_out_code, wrapped};
use crate::inventory::model::Node;
use crate::shell::quote;

/// OpenSSH's default ciphers with AES-GCM first (each of them in OpenSSH since 6.5).
const AES_FIRST: &str = "aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr";

/// The configuration `cipher_config` writes, for the inventory's `config_file` (if any).
fn cipher_config_text(config_file: Option<&str>) -> Option<String> {
    let includes = match config_file {
        Some(c) => {
            let p = std::path::absolute(expand_home(c)).ok()?;
            format!("Include {}\n", p.display())
        }
        None => "Include ~/.ssh/config\nInclude /etc/ssh/ssh_config\n".to_string(),
    };
    Some(format!(
        "# written by runbook for one run: the operator's configuration, then its cipher order\n\
{includes}Host *\n  Ciphers {AES_FIRST}\n"
    ))
}

/// The name runbook's cipher configuration files start with, in a control directory.
const CIPHER_CONFIG_PREFIX: &str = "runbook-ssh-config-";

/// Whether this CPU encrypts AES in hardware.
fn aes_accelerated() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// An idle master exits on its own after this long, so a crashed run leaves none behind for good.
const MASTER_IDLE_SECS: usize = 900;

pub struct Ssh {
    control_dir: PathBuf,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// Local forwards already opened: (node, host as the node sees it, port) -> local address.
    tunnels: tokio::sync::Mutex<HashMap<(String, String, u16), std::net::SocketAddr>>,
}

impl Ssh {
    /// `control_dir` holds the masters' sockets; it must be short (a Unix socket path is ≤ 107 bytes).
    pub fn new(control_dir: PathBuf) -> Self {
        Ssh {
            control_dir,
            sessions: Mutex::new(HashMap::new()),
            tunnels: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    fn builder(&self, node: &Node) -> SessionBuilder {
        let mut b = SessionBuilder::default();
        b.user(node.ssh.user.clone())
            .port(node.ssh.port)
            .connect_timeout(Duration::from_secs(u64::from(node.ssh.connect_timeout)))
            .server_alive_interval(Duration::from_secs(5))
            .known_hosts_check(KnownHosts::Strict)
            .control_directory(&self.control_dir)
            .control_persist(ControlPersist::IdleFor(
                NonZeroUsize::new(MASTER_IDLE_SECS).unwrap_or(NonZeroUsize::MIN),
            ));
        if let Some(k) = &node.ssh.identity_file {
            b.keyfile(expand_home(k));
        }
        if let Some(k) = &node.ssh.known_hosts {
            b.user_known_hosts_file(expand_home(k));
        }
        match self.cipher_config(node) {
            Some(c) => {
                b.config_file(c);
            }
            None => {
                if let Some(c) = &node.ssh.config_file {
                    b.config_file(expand_home(c));
                }
            }
        }
        b
    }

    /// A configuration file that reads the operator's own (the inventory's `config_file`,
    /// or `~/.ssh/config` and the system-wide one that `-F` would skip), then puts AES-GCM
    /// first among the ciphers when this CPU has AES instructions: snapshots and uploads
    /// stream through the master, and AES-GCM costs a fraction of ChaCha20-Poly1305's CPU
    /// there (OpenSSH's default order puts ChaCha20 first). A cipher the operator sets wins,
    /// as the first value ssh reads does. `None` (ssh's defaults) without AES instructions.
    fn cipher_config(&self, node: &Node) -> Option<PathBuf> {
        if !aes_accelerated() {
            return None;
        }
        let text = cipher_config_text(node.ssh.config_file.as_deref())?;
        // One file per distinct text, named by its digest: nodes sharing a config share it.
        let name = format!(
            "{CIPHER_CONFIG_PREFIX}{}",
            &crate::snapshot::hex(&sha2::Sha256::digest(&text))[..12]
        );
        let path = self.control_dir.join(name);
        if !path.exists() {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .ok()?;
            f.write_all(text.as_bytes()).ok()?;
        }
        Some(path)
    }

    fn session(&self, node: &Node) -> Result<Arc<Session>, ExecError> {
        let map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&node.name).cloned().ok_or_else(|| {
            ExecError(format!(
                "no SSH connection to {} (it was not opened)",
                node.name
            ))
        })
    }

    async fn connect_one(&self, node: &Node) -> Result<(), ExecError> {
        let where_ = format!(
            "{} ({}@{}:{})",
            node.name, node.ssh.user, node.address, node.ssh.port
        );
        let limit = Duration::from_secs(u64::from(node.ssh.connect_timeout) + 5);
        let builder = self.builder(node);
        let session = match tokio::time::timeout(limit, builder.connect_mux(&node.address)).await {
            Err(_) => {
                return Err(ExecError(format!(
                    "cannot connect to {where_}: no answer within {}s",
                    limit.as_secs()
                )));
            }
            Ok(Err(e)) => {
                return Err(ExecError(format!(
                    "cannot connect to {where_}: {}",
                    describe(&e)
                )));
            }
            Ok(Ok(s)) => s,
        };
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node.name.clone(), Arc::new(session));
        Ok(())
    }

    async fn upload_inner(&self, node: &Node, source: &Path, dest: &str) -> Result<(), String> {
        let session = self.session(node).map_err(|e| e.0)?;
        let sftp = Sftp::from_clonable_session(session, SftpOptions::new())
            .await
            .map_err(|e| format!("cannot start SFTP on {}: {e}", node.name))?;
        let part = format!("{dest}.runbook-part");
        let mut local = tokio::fs::File::open(source)
            .await
            .map_err(|e| format!("cannot open {}: {e}", source.display()))?;
        let mut remote = sftp
            .options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&part)
            .await
            .map_err(|e| format!("cannot create {part} on {}: {e}", node.name))?;
        remote
            .set_permissions(Permissions::from(0o600))
            .await
            .map_err(|e| format!("cannot set mode 0600 on {part}: {e}"))?;
        let chunk = 1 << 16;
        // write_all splits into requests of the server's size; 64 KiB reads keep memory flat.
        let mut buf = vec![0u8; chunk];
        loop {
            let n = local
                .read(&mut buf)
                .await
                .map_err(|e| format!("reading {}: {e}", source.display()))?;
            if n == 0 {
                break;
            }
            remote
                .write_all(&buf[..n])
                .await
                .map_err(|e| format!("writing {part} on {}: {e}", node.name))?;
        }
        if sftp.support_fsync() {
            remote
                .sync_all()
                .await
                .map_err(|e| format!("fsync {part} on {}: {e}", node.name))?;
        }
        remote
            .close()
            .await
            .map_err(|e| format!("closing {part} on {}: {e}", node.name))?;
        sftp.fs()
            .rename(&part, dest)
            .await
            .map_err(|e| format!("renaming {part} to {dest} on {}: {e}", node.name))?;
        sftp.close()
            .await
            .map_err(|e| format!("closing SFTP on {}: {e}", node.name))
    }
}

impl Executor for Ssh {
    async fn connect<'a>(&'a self, nodes: &'a [&'a Node]) -> Vec<(String, ExecError)> {
        // All at once: a slow or dead host costs one connect timeout, not one per host.
        let results = join_all(
            nodes
                .iter()
                .map(|n| async move { (n.name.clone(), self.connect_one(n).await) }),
        )
        .await;
        results
            .into_iter()
            .filter_map(|(name, r)| r.err().map(|e| (name, e)))
            .collect()
    }

    async fn shell<'a>(
        &'a self,
        target: Target<'a>,
        script: &'a str,
        env: &'a [(String, String)],
        timeout: Duration,
    ) -> Result<Outcome, ExecError> {
        let node = match target {
            Target::Local => return Local::run(script, env, timeout).await,
            Target::Node(n) => n,
        };
        let session = self.session(node)?;
        // The login shell parses only `sh -c '<line>'`; everything else is POSIX sh.
        let line = format!("sh -c {}", quote(&wrapped(script, env, timeout)));
        let run = async {
            session
                .raw_command(&line)
                .stdin(Stdio::null())
                .output()
                .await
        };
        match tokio::time::timeout(timeout + Duration::from_secs(15), run).await {
            Err(_) => Ok(Outcome {
                code: None,
                timed_out: true,
                stderr: format!("{} stopped answering", node.name).into_bytes(),
                ..Outcome::default()
            }),
            Ok(Err(e)) => Err(ExecError(format!(
                "lost the SSH connection to {}: {}",
                node.name,
                describe(&e)
            ))),
            Ok(Ok(out)) => Ok(Outcome {
                code: out.status.code(),
                timed_out: timed_out_code(out.status.code()),
                stdout: out.stdout,
                stderr: out.stderr,
            }),
        }
    }

    async fn upload<'a>(
        &'a self,
        node: &'a Node,
        source: &'a Path,
        dest: &'a str,
    ) -> Result<(), ExecError> {
        self.upload_inner(node, source, dest)
            .await
            .map_err(ExecError)
    }

    async fn tunnel_to<'a>(
        &'a self,
        node: &'a Node,
        host: &'a str,
        port: u16,
    ) -> Result<std::net::SocketAddr, ExecError> {
        let mut tunnels = self.tunnels.lock().await;
        let key = (node.name.clone(), host.to_string(), port);
        if let Some(addr) = tunnels.get(&key) {
            return Ok(*addr);
        }
        let session = self.session(node)?;
        // A free local port: bound and released, then given to ssh (a tiny race, retried once).
        let mut last = String::new();
        for _ in 0..2 {
            let addr = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| ExecError(format!("no free local port: {e}")))?;
            match session
                .request_port_forward(
                    openssh::ForwardType::Local,
                    addr,
                    openssh::Socket::TcpSocket {
                        host: host.into(),
                        port,
                    },
                )
                .await
            {
                Ok(()) => {
                    tunnels.insert(key, addr);
                    return Ok(addr);
                }
                Err(e) => last = describe(&e),
            }
        }
        Err(ExecError(format!(
            "cannot forward a local port to {host}:{port} on {}: {last}",
            node.name
        )))
    }

    async fn close(&self) {
        let sessions: Vec<_> = self
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        for (_, s) in sessions {
            match Arc::try_unwrap(s) {
                Ok(s) => {
                    let _ = s.close().await;
                }
                // Something still holds the session (an abandoned task): stop the master anyway.
                Err(s) => stop_master(s.control_socket()),
            }
        }
    }
}

/// Where openssh puts one master: a directory with this prefix holding `master` (the
/// socket) and `log`.
const MASTER_DIR_PREFIX: &str = ".ssh-connection";

/// A private directory for the masters' sockets of one process: created anew under a random
/// name (mkdir fails on an existing path, so nobody can have prepared it), mode 0700, and
/// removed with what is in it when dropped, panics included. It is short, in
/// `$XDG_RUNTIME_DIR` or /tmp (not `$TMPDIR`, which may be long): a socket path is at most
/// 107 bytes.
pub fn private_control_dir(purpose: &str) -> std::io::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    // runbook-<purpose>-XXXXXX/.ssh-connectionXXXXXX/master
    let room = 107 - format!("/runbook-{purpose}-XXXXXX/{MASTER_DIR_PREFIX}XXXXXX/master").len();
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute() && p.as_os_str().len() <= room)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    tempfile::Builder::new()
        .prefix(&format!("runbook-{purpose}-"))
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(base)
}

/// Stops the masters an earlier process of the same run left in its control directory
/// (killed with -9, say), so a resumed run does not leave one more connection per host
/// behind, and removes what openssh made there. The directory must be the one that process
/// created: a directory (not a link) owned by us with mode 0700; anything else is refused.
/// Only openssh's own entries are removed, and the directory itself only once empty.
pub fn reap_stale_masters(control_dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = match std::fs::symlink_metadata(control_dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot inspect {}: {e}", control_dir.display())),
    };
    let uid = nix::unistd::geteuid().as_raw();
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o7777 != 0o700 {
        return Err(format!(
            "{} is not the private directory a runbook process of this user made (a directory owned by uid {uid}, mode 0700): it is {}, owned by uid {}, mode {:04o}; it was left alone",
            control_dir.display(),
            if meta.is_dir() {
                "a directory"
            } else if meta.file_type().is_symlink() {
                "a symbolic link"
            } else {
                "not a directory"
            },
            meta.uid(),
            meta.mode() & 0o7777
        ));
    }
    let entries = std::fs::read_dir(control_dir)
        .map_err(|e| format!("cannot read {}: {e}", control_dir.display()))?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        // The cipher configuration runbook wrote there is its own too.
        if name.starts_with(CIPHER_CONFIG_PREFIX) && e.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::remove_file(e.path());
            continue;
        }
        let is_master_dir =
            name.starts_with(MASTER_DIR_PREFIX) && e.file_type().is_ok_and(|t| t.is_dir());
        if !is_master_dir {
            continue;
        }
        let socket = e.path().join("master");
        if socket.exists() {
            stop_master(&socket);
        }
        for name in ["master", "log"] {
            let _ = std::fs::remove_file(e.path().join(name));
        }
        let _ = std::fs::remove_dir(e.path());
    }
    let _ = std::fs::remove_dir(control_dir);
    Ok(())
}

fn stop_master(socket: &Path) {
    let _ = std::process::Command::new("ssh")
        .arg("-S")
        .arg(socket)
        .args(["-O", "exit", "runbook-master"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// openssh's errors, with the master's own words (connection refused, host key mismatch…).
fn describe(e: &openssh::Error) -> String {
    crate::diag::error_chain(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn control_dirs_are_fresh_private_and_short() {
        let a = private_control_dir("test").unwrap();
        let b = private_control_dir("test").unwrap();
        assert_ne!(a.path(), b.path());
        let meta = std::fs::symlink_metadata(a.path()).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o700);
        let socket = a.path().join(".ssh-connectionXXXXXX/master");
        assert!(socket.as_os_str().len() <= 107, "{socket:?}");
    }

    #[test]
    fn reaping_removes_only_what_openssh_made_and_refuses_foreign_dirs() {
        let d = private_control_dir("test").unwrap();
        let master = d.path().join(".ssh-connectionAbc123");
        std::fs::create_dir(&master).unwrap();
        std::fs::write(master.join("log"), "").unwrap();
        std::fs::write(d.path().join("notes"), "someone's").unwrap();
        reap_stale_masters(d.path()).unwrap();
        assert!(!master.exists());
        assert!(d.path().join("notes").exists());
        // Not 0700: refused, nothing removed.
        std::fs::create_dir(&master).unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = reap_stale_masters(d.path()).unwrap_err();
        assert!(e.contains("mode 0755"), "{e}");
        assert!(master.exists());
        // A path that is gone is nothing to do.
        reap_stale_masters(&d.path().join("gone")).unwrap();
    }

    /// What ssh itself makes of a configuration for `host` (`ssh -G`).
    fn effective(config: &str, host: &str) -> String {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("config");
        std::fs::write(&p, config).unwrap();
        let out = std::process::Command::new("ssh")
            .arg("-G")
            .arg("-F")
            .arg(&p)
            .arg(host)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn aes_gcm_comes_first_and_the_operators_own_settings_still_apply() {
        let d = tempfile::tempdir().unwrap();
        let user = d.path().join("user_config");
        std::fs::write(&user, "Host db1\n  Port 2222\n  User admin\n").unwrap();
        let text = cipher_config_text(Some(user.to_str().unwrap())).unwrap();
        let got = effective(&text, "db1");
        assert!(got.contains(&format!("ciphers {AES_FIRST}")), "{got}");
        assert!(
            got.contains("port 2222") && got.contains("user admin"),
            "{got}"
        );
    }

    #[test]
    fn a_cipher_the_operator_sets_wins() {
        let d = tempfile::tempdir().unwrap();
        let user = d.path().join("user_config");
        std::fs::write(&user, "Host *\n  Ciphers aes256-ctr\n").unwrap();
        let text = cipher_config_text(Some(user.to_str().unwrap())).unwrap();
        assert!(effective(&text, "db1").contains("ciphers aes256-ctr\n"));
    }
}
