//! `runbook snapshot status|list|save`: the native snapshot check (of a file or an S3 object),
//! a directory's or S3 prefix's snapshots, and a snapshot taken over SSH.

use std::path::Path;

use super::{Done, EXIT_OK, Failure, print_out};
use crate::cli::{SnapshotCommand, SnapshotFormat};
use crate::executor::Executor;
use crate::executor::ssh::Ssh;
use crate::inventory::model::Node;
use crate::snapshot::s3::{Bucket, S3Url};
use crate::snapshot::status::{Status, StatusError, Trailer, status};
use crate::table::Table;

pub fn run(cmd: SnapshotCommand) -> Done {
    match cmd {
        SnapshotCommand::Save {
            file,
            inventory: Some(inventory),
            member,
            ..
        } => save(&file, &inventory, member.as_deref()),
        SnapshotCommand::Save {
            file,
            endpoint: Some(endpoint),
            cacert,
            cert,
            key,
            ..
        } => save_direct(&file, &endpoint, cacert, cert, key),
        SnapshotCommand::List { dir, output } => list(&dir, output),
        SnapshotCommand::Get {
            snapshot,
            targets,
            namespace,
            output,
            for_apply,
            show_managed_fields,
            encryption_config,
            apply,
            inventory,
            kubeconfig,
            dry_run,
            overwrite,
        } => super::get::run(super::get::GetArgs {
            snapshot: &snapshot,
            targets: &targets,
            namespace: namespace.as_deref(),
            output,
            for_apply,
            show_managed_fields,
            encryption_config: encryption_config.as_deref(),
            apply: apply.then_some(super::get::Cluster {
                inventory: inventory.as_deref(),
                kubeconfig: kubeconfig.as_deref(),
                dry_run,
                overwrite,
            }),
        }),
        SnapshotCommand::Diff {
            snapshot,
            newer,
            inventory,
            output,
        } => super::diff::run(&snapshot, newer.as_deref(), inventory.as_deref(), output),
        SnapshotCommand::Save { .. } => Err(Failure::usage(
            "snapshot save needs a cluster",
            &"neither -i INVENTORY nor --endpoint URL was given",
            None,
        )),
        SnapshotCommand::Status { file, output } => {
            let fetched = fetch_if_s3(&file)?;
            let local = fetched
                .as_ref()
                .map_or(file.as_path(), |f| f.path.as_path());
            status_of(&file, local, output)
        }
    }
}

/// An `s3://bucket/key` argument fetched into a private directory (removed when dropped) and
/// checked against its `.sha256`; `None` for a local path.
pub(super) struct Fetched {
    pub(super) path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

pub(super) fn fetch_if_s3(arg: &Path) -> Result<Option<Fetched>, Failure> {
    let text = arg.to_string_lossy();
    let Some(object) = S3Url::object(&text) else {
        return Ok(None);
    };
    let (url, name) = object.map_err(|e| Failure::usage("not an S3 object", &e, None))?;
    let dir = tempfile::Builder::new()
        .prefix("runbook-fetched-")
        .tempdir()
        .map_err(|e| Failure::usage("cannot make a private directory", &e, None))?;
    let (path, _, checked) = runtime()?
        .block_on(async {
            let bucket = Bucket::open(&url, None)?;
            bucket.fetch(&name, dir.path()).await
        })
        .map_err(Failure::invalid)?;
    eprintln!("fetched {text}: {checked}");
    Ok(Some(Fetched { path, _dir: dir }))
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::usage("cannot start the async runtime", &e, None))
}

/// `snapshot status` of `local`, named `file` (what the operator gave) in messages.
fn status_of(file: &Path, local: &Path, output: SnapshotFormat) -> Done {
    match status(local) {
        Err(StatusError::Io { path, error }) => {
            Err(Failure::usage(&format!("cannot read {path}"), &error, None))
        }
        Err(e) => Err(Failure::Invalid {
            what: e.to_string(),
            causes: Vec::new(),
            hint: Some(
                "this file cannot be restored; take another snapshot or use an older one".into(),
            ),
        }),
        Ok(s) => {
            match output {
                SnapshotFormat::Json => {
                    // Both counts stay (total_keys: every pair; live_keys_36), plus the one
                    // etcdutl of the snapshot's own version prints, and what it counts.
                    let mut v = serde_json::to_value(&s).unwrap_or_default();
                    if let Some(o) = v.as_object_mut() {
                        o.insert("etcdutl_total_keys".into(), s.etcdutl_total_keys().into());
                        o.insert("total_keys_meaning".into(), s.total_keys_meaning().into());
                        // What is wrong with a damaged file, in words (null otherwise).
                        let damage = match s.sha256 {
                            Trailer::Damaged(d) => d.to_string().into(),
                            _ => serde_json::Value::Null,
                        };
                        o.insert("damage".into(), damage);
                    }
                    let text = serde_json::to_string_pretty(&v).unwrap_or_default() + "\n";
                    print_out(&text)?;
                }
                SnapshotFormat::Text => print_out(&table(&s))?,
            }
            if s.sha256 == Trailer::Mismatch {
                return Err(Failure::invalid(format!(
                    "{}: the SHA-256 trailer does not match the content: corrupted or truncated",
                    file.display()
                )));
            }
            if let Trailer::Damaged(damage) = s.sha256 {
                return Err(Failure::Invalid {
                    what: format!("{} is damaged: {damage}", file.display()),
                    causes: Vec::new(),
                    hint: Some(damage.hint().to_string()),
                });
            }
            if s.sha256 == Trailer::Absent {
                eprintln!(
                    "note: {} has no SHA-256 trailer (a copy of member/snap/db): restore needs --skip-hash-check",
                    file.display()
                );
            }
            Ok(EXIT_OK)
        }
    }
}

fn table(s: &Status) -> String {
    let head = ["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"];
    let row = [
        s.hash.clone(),
        s.revision.to_string(),
        s.etcdutl_total_keys().to_string(),
        human_bytes(s.total_size),
    ];
    let mut t = Table::new(&head, &[], false);
    t.row(row);
    let mut out = t.render();
    out.push('\n');
    let trailer = match s.sha256 {
        Trailer::Ok => "ok".to_string(),
        Trailer::Mismatch => "MISMATCH".to_string(),
        Trailer::Absent => "absent (raw db copy)".to_string(),
        Trailer::Damaged(d) => format!("DAMAGED: {d}"),
    };
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    out.push_str(&format!("sha256 trailer:        {trailer}\n"));
    out.push_str(&format!("file sha256:           {}\n", s.file_sha256));
    out.push_str(&format!("file size:             {} bytes\n", s.file_size));
    out.push_str(&format!(
        "TOTAL KEYS counts:     {}\n",
        s.total_keys_meaning()
    ));
    out.push_str(&format!("all pairs (etcd 3.5):  {}\n", s.total_keys));
    out.push_str(&format!("live keys (etcd 3.6):  {}\n", s.live_keys_36));
    out.push_str(&format!(
        "storage version:       {}\n",
        opt(s.storage_version.clone())
    ));
    out.push_str(&format!(
        "consistent index:      {}\n",
        opt(s.consistent_index.map(|v| v.to_string()))
    ));
    out.push_str(&format!(
        "raft term:             {}\n",
        opt(s.term.map(|v| v.to_string()))
    ));
    out.push_str(&format!(
        "compacted revision:    {} (scheduled {})\n",
        opt(s.compact_revision_finished.map(|v| v.to_string())),
        opt(s.compact_revision_scheduled.map(|v| v.to_string()))
    ));
    for m in &s.members {
        out.push_str(&format!(
            "member:                {} {} {}{}\n",
            m.id,
            m.name,
            m.peer_urls.join(","),
            if m.is_learner { " (learner)" } else { "" }
        ));
    }
    out.push_str(&format!(
        "bbolt:                 page size {}, txid {}\n",
        s.page_size, s.txid
    ));
    // How the live values are stored: a restore needs every key named here in the
    // kube-apiserver's EncryptionConfiguration.
    if s.encryption.iter().any(|k| k.provider != "identity") {
        let mut t = Table::new(&["ENCRYPTION", "KEY", "OBJECTS"], &[2], false);
        for k in &s.encryption {
            t.row([
                k.provider.clone(),
                if k.key.is_empty() {
                    "-".into()
                } else {
                    k.key.clone()
                },
                k.objects.to_string(),
            ]);
        }
        out.push('\n');
        out.push_str(&t.render());
        out.push('\n');
    }
    out
}

/// Sizes as etcdutl prints them (humanize.Bytes: SI units, one decimal under 10).
/// TOTAL SIZE as etcdutl prints it (go-humanize's `Bytes`: powers of 1000, one decimal below
/// 10, none above), so the figure compares equal to `etcdutl snapshot status`; humansize's
/// fixed precision would not.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    if n < 10 {
        return format!("{n} B");
    }
    let e = ((n as f64).ln() / 1000f64.ln()).floor() as usize;
    let e = e.min(UNITS.len() - 1);
    let v = n as f64 / 1000f64.powi(e as i32);
    if v < 10.0 {
        format!("{:.1} {}", v, UNITS[e])
    } else {
        format!("{:.0} {}", v, UNITS[e])
    }
}

fn save(file: &Path, inventory: &Path, member: Option<&str>) -> Done {
    let inv = super::load_inventory(inventory)?;
    let members = inv.etcd_members();
    if let Some(m) = member
        && !members.iter().any(|n| n.name == m)
    {
        return Err(Failure::usage(
            &format!("no etcd member {m:?} in {}", inventory.display()),
            &format!(
                "members: {}",
                members
                    .iter()
                    .map(|n| n.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None,
        ));
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return Err(Failure::usage("cannot start the async runtime", &e, None)),
    };
    let dir = match crate::executor::ssh::private_control_dir("save") {
        Ok(d) => d,
        Err(e) => {
            return Err(Failure::usage(
                "cannot create the SSH control directory",
                &e,
                None,
            ));
        }
    };
    // The directory is removed when `dir` is dropped, after the masters are closed.
    rt.block_on(async {
        let exec = Ssh::new(dir.path().to_path_buf());
        let code = save_with(&exec, &members, member, file).await;
        exec.close().await;
        code
    })
}

async fn save_with(exec: &Ssh, members: &[&Node], member: Option<&str>, file: &Path) -> Done {
    let unreachable = exec.connect(members).await;
    if !unreachable.is_empty() {
        return Err(Failure::Invalid {
            what: format!("cannot reach {} of the members", unreachable.len()),
            causes: unreachable.iter().map(|(_, e)| e.to_string()).collect(),
            hint: None,
        });
    }
    let mut pre = crate::etcd::preflight::run(exec, members, &[])
        .await
        .map_err(Failure::invalid)?;
    for m in &pre.members {
        eprintln!("  {}", crate::etcd::preflight::describe(m));
    }
    let source = member.map(str::to_string).unwrap_or(pre.source.clone());
    let client = pre
        .clients
        .get_mut(&source)
        .ok_or_else(|| Failure::invalid(format!("no connection to {source}")))?;
    eprintln!("saving a snapshot from {source} to {}", file.display());
    report_saved(crate::etcd::save::save(client, file).await, &source)
}

/// `--endpoint`: straight to one member's client URL with TLS files from this machine.
fn save_direct(
    file: &Path,
    endpoint: &str,
    cacert: Option<std::path::PathBuf>,
    cert: Option<std::path::PathBuf>,
    key: Option<std::path::PathBuf>,
) -> Done {
    let read = |p: &Option<std::path::PathBuf>| -> Result<Option<Vec<u8>>, Failure> {
        match p {
            None => Ok(None),
            Some(p) => std::fs::read(p)
                .map(Some)
                .map_err(|e| Failure::usage(&format!("cannot read {}", p.display()), &e, None)),
        }
    };
    let (ca, crt, k) = (read(&cacert)?, read(&cert)?, read(&key)?);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return Err(Failure::usage("cannot start the async runtime", &e, None)),
    };
    rt.block_on(async {
        let tls = (ca.is_some() || crt.is_some()).then(|| {
            let mut tls = etcd_client::TlsOptions::new();
            if let Some(ca) = &ca {
                tls = tls.ca_certificate(etcd_client::Certificate::from_pem(ca));
            }
            if let (Some(c), Some(k)) = (&crt, &k) {
                tls = tls.identity(etcd_client::Identity::from_pem(c, k));
            }
            tls
        });
        // A bare host:port means https with TLS files given, http without (as etcdctl reads it).
        let url = match (endpoint.contains("://"), tls.is_some()) {
            (true, _) => endpoint.to_string(),
            (false, true) => format!("https://{endpoint}"),
            (false, false) => format!("http://{endpoint}"),
        };
        let mut client = crate::etcd::client_at(&url, tls)
            .await
            .map_err(|e| Failure::invalid(format!("cannot reach etcd at {endpoint}: {e}")))?;
        report_saved(crate::etcd::save::save(&mut client, file).await, endpoint)
    })
}

fn report_saved(r: Result<crate::etcd::save::Saved, String>, source: &str) -> Done {
    match r {
        Ok(s) => {
            let mb = s.bytes as f64 / 1e6;
            print_out(&format!("{}\n", s.path.display()))?;
            eprintln!(
                "saved {} ({mb:.1} MB in {:.2}s, {:.0} MB/s) from {source}: sha256 {}, trailer ok, revision {}, {} keys, hash {}",
                s.path.display(),
                s.took.as_secs_f64(),
                mb / s.took.as_secs_f64().max(1e-6),
                s.sha256,
                s.status.revision,
                s.status.total_keys,
                s.status.hash
            );
            Ok(EXIT_OK)
        }
        // The destination could not be written: a usage failure (exit 2), the operator's to fix.
        Err(e) if e.contains("cannot create") || e.contains("cannot rename") => Err(
            Failure::usage(&format!("snapshot from {source} failed"), &e, None),
        ),
        Err(e) => Err(Failure::invalid(format!(
            "snapshot from {source} failed: {e}"
        ))),
    }
}

/// One snapshot of a directory, as `snapshot list` shows it.
#[derive(serde::Serialize)]
struct Listed {
    file: String,
    /// Its modification time (`snapshot save` renames the finished file into place).
    taken: Option<String>,
    size: u64,
    revision: Option<i64>,
    keys: Option<u64>,
    /// `ok`, or what is wrong with it.
    check: String,
    ok: bool,
}

/// Every `*.db` in `dir`, newest first, each checked like `snapshot status` and against the
/// `.sha256` written beside it.
fn list(dir: &Path, output: SnapshotFormat) -> Done {
    let listed = match S3Url::parse(&dir.to_string_lossy()) {
        Some(url) => {
            let url = url.map_err(|e| Failure::usage("not an S3 prefix", &e, None))?;
            list_s3(&url)?
        }
        None => list_dir(dir)?,
    };
    show_listed(&listed, &dir.display().to_string(), output)
}

fn list_dir(dir: &Path) -> Result<Vec<Listed>, Failure> {
    let cannot = |e: &dyn std::fmt::Display| {
        Failure::usage(&format!("cannot list {}", dir.display()), e, None)
    };
    let mut files: Vec<(std::time::SystemTime, std::path::PathBuf)> = std::fs::read_dir(dir)
        .map_err(|e| cannot(&e))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "db") && p.is_file())
        .map(|p| {
            let t = std::fs::metadata(&p)
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            (t, p)
        })
        .collect();
    files.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    Ok(files
        .iter()
        .map(|(t, p)| {
            // The digest `snapshot save` (and the backup plan's copies) write beside the file.
            let sidecar = std::fs::read_to_string(p.with_extension("db.sha256")).ok();
            check_one(p, *t, sidecar)
        })
        .collect())
}

/// Every `*.db` directly under the prefix, newest first, each fetched in turn into a private
/// directory (one at a time: the disk holds one snapshot, not the whole prefix) and checked.
fn list_s3(url: &S3Url) -> Result<Vec<Listed>, Failure> {
    let dir = tempfile::Builder::new()
        .prefix("runbook-fetched-")
        .tempdir()
        .map_err(|e| Failure::usage("cannot make a private directory", &e, None))?;
    runtime()?.block_on(async {
        let bucket = Bucket::open(url, None).map_err(Failure::invalid)?;
        let mut objects: Vec<_> = bucket
            .list()
            .await
            .map_err(Failure::invalid)?
            .into_iter()
            .filter(|o| o.name.ends_with(".db"))
            .collect();
        objects.sort_by(|a, b| {
            b.modified
                .cmp(&a.modified)
                .then_with(|| a.name.cmp(&b.name))
        });
        let mut listed = Vec::new();
        for o in objects {
            let local = dir.path().join(&o.name);
            let row = match bucket.download(&o.name, &local).await {
                Err(e) => Listed::unreadable(o.name.clone(), None, o.size, e),
                Ok(_) => {
                    let sidecar = bucket
                        .text(&format!("{}.sha256", o.name))
                        .await
                        .map_err(Failure::invalid)?;
                    check_one(&local, o.modified, sidecar)
                }
            };
            let _ = std::fs::remove_file(&local);
            listed.push(row);
        }
        Ok(listed)
    })
}

fn show_listed(listed: &[Listed], place: &str, output: SnapshotFormat) -> Done {
    let text = match output {
        SnapshotFormat::Json => serde_json::to_string_pretty(&listed).unwrap_or_default() + "\n",
        SnapshotFormat::Text => {
            let mut t = Table::new(
                &["FILE", "TAKEN (UTC)", "SIZE", "REVISION", "KEYS", "CHECK"],
                &[2, 3, 4],
                false,
            );
            let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
            for l in listed {
                t.row([
                    l.file.clone(),
                    opt(l.taken.clone()),
                    human_bytes(l.size),
                    opt(l.revision.map(|r| r.to_string())),
                    opt(l.keys.map(|k| k.to_string())),
                    l.check.clone(),
                ]);
            }
            let mut out = t.render();
            out.push('\n');
            out
        }
    };
    print_out(&text)?;
    let bad = listed.iter().filter(|l| !l.ok).count();
    if bad > 0 {
        return Err(Failure::invalid(format!(
            "{bad} of {} snapshots in {place} do not check out",
            listed.len(),
        )));
    }
    Ok(EXIT_OK)
}

impl Listed {
    fn unreadable(file: String, taken: Option<String>, size: u64, e: String) -> Listed {
        Listed {
            file,
            taken,
            size,
            revision: None,
            keys: None,
            check: format!("unreadable: {e}"),
            ok: false,
        }
    }
}

/// One snapshot checked like `snapshot status` and against `sidecar`, the `.sha256` text.
fn check_one(path: &Path, modified: std::time::SystemTime, sidecar: Option<String>) -> Listed {
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let taken = (modified != std::time::UNIX_EPOCH).then(|| {
        humantime::format_rfc3339_seconds(modified)
            .to_string()
            .replace('T', " ")
            .trim_end_matches('Z')
            .to_string()
    });
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let st = match status(path) {
        Ok(st) => st,
        Err(e) => return Listed::unreadable(file, taken, size, e.to_string()),
    };
    let sidecar = sidecar.and_then(|t| t.split_whitespace().next().map(str::to_ascii_lowercase));
    let (check, ok) = match (&st.sha256, sidecar) {
        (Trailer::Mismatch, _) => ("SHA-256 trailer MISMATCH".to_string(), false),
        (Trailer::Damaged(d), _) => (format!("DAMAGED: {d}"), false),
        (_, Some(want)) if want != st.file_sha256 => (".sha256 DIFFERS".to_string(), false),
        (Trailer::Absent, _) => (
            "ok (no trailer: a copy of member/snap/db)".to_string(),
            true,
        ),
        (Trailer::Ok, Some(_)) => ("ok (trailer, .sha256)".to_string(), true),
        (Trailer::Ok, None) => ("ok (trailer; no .sha256)".to_string(), true),
    };
    Listed {
        file,
        taken,
        size,
        revision: Some(st.revision),
        keys: Some(st.etcdutl_total_keys()),
        check,
        ok,
    }
}
