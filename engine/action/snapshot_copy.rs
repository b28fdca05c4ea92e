//! `snapshot.copy` and `snapshot.prune`: keep a saved snapshot off the host it was taken on,
//! check the copy where it landed, and keep only the newest N.
//!
//! Destinations: a directory on this machine, `[user@]host:dir` (scp, checked with
//! `sha256sum -c` over ssh), or `s3://bucket/prefix` (runbook's own S3 client: uploaded,
//! read back in full and its sha256 compared; pruned by listing the prefix).

use schemars::JsonSchema;
use serde::Deserialize;

use super::{Act, Action, ActionInfo, ArgError, Command, Count, Ctx, Native, RunCx, Said, args, schema_of, secs};
use crate::executor::BoxFut;
use crate::shell::quote;
use crate::snapshot::s3::{Bucket, S3Url, Sse};

pub static COPY: ActionInfo = ActionInfo {
    name: "snapshot.copy",
    summary: "copy a saved snapshot and its .sha256 to a directory, an scp target or S3, and check it there",
    default_timeout: secs(1800),
    destructive: false,
    idempotent: true,
    schema: schema_of::<CopyArgs>,
    parse: |v, ctx| Ok(Action::new(SnapshotCopy::new(args(v)?, ctx)?)),
};

pub static PRUNE: ActionInfo = ActionInfo {
    name: "snapshot.prune",
    summary: "keep the newest N snapshots (PREFIX*.db) in a directory, scp target or S3 prefix, and/or those younger than an age; delete the others (never the newest)",
    default_timeout: secs(300),
    destructive: true,
    idempotent: true,
    schema: schema_of::<PruneArgs>,
    parse: |v, ctx| Ok(Action::new(SnapshotPrune::new(args(v)?, ctx)?)),
};

/// Where copies go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    Dir(String),
    Scp { host: String, dir: String },
    S3(S3Url),
}

impl Dest {
    fn parse(field: &str, to: &str) -> Result<Dest, ArgError> {
        if to.trim().is_empty() || to.chars().any(char::is_control) {
            return Err(ArgError::field(
                field,
                format!("`{field}` is empty or contains a control character"),
            ));
        }
        if let Some(url) = S3Url::parse(to) {
            return url.map(Dest::S3).map_err(|e| {
                ArgError::field(field, format!("`{field}` {e}")).hint("e.g. s3://backups/etcd")
            });
        }
        if to.starts_with('/') {
            return Ok(Dest::Dir(to.trim_end_matches('/').to_string()));
        }
        match to.split_once(':') {
            Some((host, dir)) if !host.is_empty() && !host.starts_with('-') && !dir.is_empty() => {
                Ok(Dest::Scp {
                    host: host.to_string(),
                    dir: dir.trim_end_matches('/').to_string(),
                })
            }
            _ => Err(
                ArgError::field(field, format!("`{field}` {to:?} is not a destination"))
                    .hint("an absolute directory, [user@]host:/dir (scp) or s3://bucket/prefix"),
            ),
        }
    }
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

fn require_local(ctx: &Ctx, action: &str) -> Result<(), ArgError> {
    if ctx.node.is_some() {
        return Err(ArgError {
            field: None,
            message: format!("`{action}` runs on this machine, where the saved snapshot is"),
            hint: Some("use `on: local`".into()),
        });
    }
    Ok(())
}

/// Arguments of `snapshot.copy`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(rename = "SnapshotCopyArgs")]
#[serde(deny_unknown_fields)]
pub struct CopyArgs {
    /// The saved snapshot on this machine (its `.sha256` beside it goes along).
    pub source: String,
    /// An absolute directory, `[user@]host:/dir`, or `s3://bucket/prefix`.
    pub to: String,
    /// S3 only: server-side encryption, `AES256`, `aws:kms` or `aws:kms:dsse`; empty or
    /// absent: the bucket's default.
    #[serde(default)]
    pub sse: Option<String>,
    /// S3 only: the KMS key for `aws:kms`; empty or absent: the account's `aws/s3` key.
    #[serde(default)]
    pub sse_kms_key_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SnapshotCopy {
    pub source: String,
    pub to: Dest,
    pub sse: Option<Sse>,
}

impl SnapshotCopy {
    pub fn new(args: CopyArgs, ctx: &Ctx) -> Result<Self, ArgError> {
        require_local(ctx, "snapshot.copy")?;
        if args.source.trim().is_empty() || args.source.ends_with('/') {
            return Err(ArgError::field("source", "`source` must name a file"));
        }
        let to = Dest::parse("to", &args.to)?;
        // Templates render an unset choice as "": the same as not asking.
        let given = |v: Option<String>| v.map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let sse = match given(args.sse) {
            None if given(args.sse_kms_key_id.clone()).is_some() => {
                return Err(ArgError::field(
                    "sse_kms_key_id",
                    "`sse_kms_key_id` without `sse: aws:kms`",
                ));
            }
            None => None,
            Some(kind) => Some(
                Sse::parse(&kind, given(args.sse_kms_key_id))
                    .map_err(|e| ArgError::field("sse", format!("`sse` {e}")))?,
            ),
        };
        if sse.is_some() && !matches!(to, Dest::S3(_)) {
            return Err(ArgError::field("sse", "`sse` applies to S3 destinations only"));
        }
        Ok(SnapshotCopy {
            to,
            source: args.source,
            sse,
        })
    }
}

impl Act for SnapshotCopy {
    fn commands(&self) -> Vec<Command> {
        let src = quote(&self.source);
        let sum = quote(&format!("{}.sha256", self.source));
        let name = basename(&self.source);
        match &self.to {
            Dest::Dir(dir) => {
                let part = quote(&format!("{dir}/.{name}.part"));
                let dest = quote(&format!("{dir}/{name}"));
                vec![
                    Command::Shell(format!(
                        "mkdir -p -- {d} && cp -- {src} {part} && chmod 0600 {part} && sync -- {part} && mv -- {part} {dest} && cp -- {sum} {d}/",
                        d = quote(dir)
                    )),
                    Command::Shell(format!(
                        "cd -- {} && sha256sum --quiet -c -- {}",
                        quote(dir),
                        quote(&format!("{name}.sha256"))
                    )),
                ]
            }
            Dest::Scp { host, dir } => {
                let remote = format!("mkdir -p -- {d} && chmod 0700 -- {d}", d = quote(dir));
                let check = format!(
                    "cd -- {} && sha256sum --quiet -c -- {}",
                    quote(dir),
                    quote(&format!("{name}.sha256"))
                );
                vec![
                    Command::Shell(format!(
                        "ssh -o BatchMode=yes -- {h} {}",
                        quote(&remote),
                        h = quote(host)
                    )),
                    Command::Shell(format!(
                        "scp -q -p -o BatchMode=yes -- {src} {sum} {}",
                        quote(&format!("{host}:{dir}/"))
                    )),
                    Command::Shell(format!(
                        "ssh -o BatchMode=yes -- {} {}",
                        quote(host),
                        quote(&check)
                    )),
                ]
            }
            Dest::S3(url) => {
                let sse = match &self.sse {
                    None => String::new(),
                    Some(s) => format!(", encrypted at rest ({})", s.describe()),
                };
                vec![Command::native(
                    UploadS3 {
                        source: self.source.clone(),
                        name: name.to_string(),
                        url: url.clone(),
                        sse: self.sse.clone(),
                    },
                    format!(
                        "upload {} and its .sha256 to {url}/{name}{sse}, read the object back and compare its sha256 with the .sha256",
                        quote(&self.source)
                    ),
                )]
            }
        }
    }
}

/// Arguments of `snapshot.prune`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(rename = "SnapshotPruneArgs")]
#[serde(deny_unknown_fields)]
pub struct PruneArgs {
    /// An absolute directory or `[user@]host:/dir` holding the snapshots.
    pub dir: String,
    /// Snapshot file names start with this (e.g. "etcd-prod-"); only `PREFIX*.db` files are pruned.
    pub prefix: String,
    /// How many of the newest to keep (at least 1); a number, or digits from a template.
    #[serde(default)]
    pub keep: Option<Count>,
    /// Delete snapshots older than this (e.g. `30d`, `12h`), except the newest; empty: no limit.
    #[serde(default)]
    pub max_age: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SnapshotPrune {
    pub dir: Dest,
    pub prefix: String,
    pub keep: u32,
    /// Older than this many minutes is deleted (the newest never is).
    pub max_age_min: Option<u64>,
}

impl SnapshotPrune {
    pub fn new(args: PruneArgs, ctx: &Ctx) -> Result<Self, ArgError> {
        require_local(ctx, "snapshot.prune")?;
        let max_age = args.max_age.as_deref().map(str::trim).filter(|a| !a.is_empty());
        let max_age_min = match max_age {
            None => None,
            Some(a) => match crate::check::parse_duration(a) {
                Some(d) if d.as_secs() >= 60 => Some(d.as_secs() / 60),
                _ => {
                    return Err(ArgError::field(
                        "max_age",
                        format!("`max_age` {a:?} is not a duration of a minute or more"),
                    )
                    .hint("e.g. 30d, 12h, 90m"));
                }
            },
        };
        if args.keep.is_none() && max_age_min.is_none() {
            return Err(ArgError::field(
                "keep",
                "`snapshot.prune` needs `keep` (how many), `max_age` (how old), or both",
            ));
        }
        // By age alone: no limit on the count.
        let keep = args.keep.map_or(u32::MAX, |k| k.0);
        if keep == 0 {
            return Err(ArgError::field(
                "keep",
                "`keep` must be at least 1: pruning every snapshot is never intended",
            ));
        }
        if args.prefix.is_empty()
            || args.prefix.contains('/')
            || args.prefix.chars().any(char::is_control)
        {
            return Err(
                ArgError::field("prefix", "`prefix` must be a non-empty file name prefix")
                    .hint("e.g. \"etcd-{{ cluster.name }}-\""),
            );
        }
        let dir = Dest::parse("dir", &args.dir)?;
        Ok(SnapshotPrune {
            dir,
            prefix: args.prefix,
            keep,
            max_age_min,
        })
    }
}

impl Act for SnapshotPrune {
    fn commands(&self) -> Vec<Command> {
        // Newest first: the newest is always kept; past `keep`, or older than `max_age`, goes.
        let too_old = match self.max_age_min {
            Some(m) => format!(" || [ -n \"$(find \"./$f\" -maxdepth 0 -mmin +{m})\" ]"),
            None => String::new(),
        };
        let script = |dir: &str| {
            format!(
                "cd -- {} && ls -1t -- {}*.db 2>/dev/null | {{ n=0; while IFS= read -r f; do n=$((n+1)); [ \"$n\" -gt 1 ] || continue; if [ \"$n\" -gt {} ]{too_old}; then rm -f -- \"$f\" \"$f.sha256\" && echo \"removed $f\"; fi; done; }}",
                quote(dir),
                quote(&self.prefix),
                self.keep
            )
        };
        match &self.dir {
            Dest::Dir(d) => vec![Command::Shell(script(d))],
            Dest::Scp { host, dir } => vec![Command::Shell(format!(
                "ssh -o BatchMode=yes -- {} {}",
                quote(host),
                quote(&script(dir))
            ))],
            Dest::S3(url) => {
                let mut rule = format!("keep the newest {}", self.keep);
                if self.keep == u32::MAX {
                    rule = "keep the newest".into();
                }
                if let Some(m) = self.max_age_min {
                    rule.push_str(&format!(
                        " and those younger than {}",
                        humantime::format_duration(std::time::Duration::from_secs(m * 60))
                    ));
                }
                vec![Command::native(
                    PruneS3 {
                        url: url.clone(),
                        prefix: self.prefix.clone(),
                        keep: self.keep,
                        max_age_min: self.max_age_min,
                    },
                    format!(
                        "list {url}/{}*.db, {rule}; delete the others with their .sha256",
                        self.prefix
                    ),
                )]
            }
        }
    }
}

/// The upload to S3, and the check that what S3 now holds is the snapshot.
#[derive(Debug)]
struct UploadS3 {
    source: String,
    name: String,
    url: S3Url,
    sse: Option<Sse>,
}

impl Native for UploadS3 {
    fn run<'a>(&'a self, cx: &'a RunCx<'a>) -> BoxFut<'a, Result<Said, String>> {
        Box::pin(async move {
            let started = std::time::Instant::now();
            let source = std::path::Path::new(&self.source);
            // The digest written at save time is the reference, as for the other destinations.
            let side = format!("{}.sha256", self.source);
            let line = std::fs::read_to_string(&side)
                .map_err(|e| format!("cannot read {side}: {e}"))?;
            let want = line
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_lowercase();
            let local = cx.files.sha256(&self.source).await?;
            if want != local {
                return Err(format!(
                    "{}: sha256 {local} differs from its .sha256 ({want}); not copying a changed file",
                    self.source
                ));
            }
            let bucket = Bucket::open(&self.url, self.sse.as_ref())?;
            let size = bucket.upload(source, &self.name).await?;
            bucket
                .put_text(&format!("{}.sha256", self.name), line)
                .await?;
            let back = bucket.sha256(&self.name).await?;
            if back != want {
                return Err(format!(
                    "{}/{}: read back with sha256 {back}, the snapshot's is {want}: the copy is damaged",
                    self.url, self.name
                ));
            }
            Ok(Said::shown(format!(
                "{}/{}: {} uploaded and read back in {:.2}s, sha256 {back} as the .sha256 says",
                self.url,
                self.name,
                humansize::format_size(size, humansize::BINARY),
                started.elapsed().as_secs_f64()
            )))
        })
    }
}

/// Retention in an S3 prefix: the same rule as in a directory, by the objects' times.
#[derive(Debug)]
struct PruneS3 {
    url: S3Url,
    prefix: String,
    keep: u32,
    max_age_min: Option<u64>,
}

impl Native for PruneS3 {
    fn run<'a>(&'a self, _cx: &'a RunCx<'a>) -> BoxFut<'a, Result<Said, String>> {
        Box::pin(async move {
            let bucket = Bucket::open(&self.url, None)?;
            let mut snaps: Vec<_> = bucket
                .list()
                .await?
                .into_iter()
                .filter(|o| o.name.starts_with(&self.prefix) && o.name.ends_with(".db"))
                .collect();
            snaps.sort_by(|a, b| b.modified.cmp(&a.modified).then_with(|| b.name.cmp(&a.name)));
            let now = std::time::SystemTime::now();
            let mut removed = Vec::new();
            // Newest first: the newest always stays; past `keep`, or older than `max_age`, goes.
            for (n, o) in snaps.iter().enumerate().skip(1) {
                let age_min = now
                    .duration_since(o.modified)
                    .map_or(0, |d| d.as_secs() / 60);
                let too_old = self.max_age_min.is_some_and(|m| age_min > m);
                if n as u64 >= u64::from(self.keep) || too_old {
                    bucket.delete(&o.name).await?;
                    bucket.delete(&format!("{}.sha256", o.name)).await?;
                    removed.push(format!("removed {}", o.name));
                }
            }
            let kept = snaps.len() - removed.len();
            removed.push(format!(
                "{}*.db at {}: {kept} kept, {} removed",
                self.prefix,
                self.url,
                removed.len()
            ));
            Ok(Said::shown(removed.join("\n")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Runs a prune of `dir` with sh, as the operator's machine would, and lists what is left.
    fn prune(dir: &Path, keep: u32, max_age_min: Option<u64>) -> Vec<String> {
        let p = SnapshotPrune {
            dir: Dest::Dir(dir.display().to_string()),
            prefix: "etcd-c-".into(),
            keep,
            max_age_min,
        };
        let Command::Shell(script) = &p.commands()[0] else {
            panic!("a shell command")
        };
        let out = std::process::Command::new("sh")
            .args(["-c", script])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let mut left: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        left
    }

    /// Four snapshots, 1, 10, 40 and 50 days old, each with its .sha256, and one of another
    /// cluster that is never touched.
    fn four(dir: &Path) {
        for (name, days) in [("a", 50), ("b", 40), ("c", 10), ("d", 1)] {
            for f in [format!("etcd-c-{name}.db"), format!("etcd-c-{name}.db.sha256")] {
                let path = dir.join(&f);
                std::fs::write(&path, "x").unwrap();
                let when = std::time::SystemTime::now()
                    - std::time::Duration::from_secs(days * 86400);
                std::fs::File::options()
                    .write(true)
                    .open(&path)
                    .unwrap()
                    .set_modified(when)
                    .unwrap();
            }
        }
        std::fs::write(dir.join("etcd-other-z.db"), "x").unwrap();
    }

    #[test]
    fn prune_keeps_by_count_by_age_or_both_and_never_the_newest() {
        let names = |l: &[&str]| -> Vec<String> {
            let mut v: Vec<String> = l
                .iter()
                .flat_map(|n| [format!("etcd-c-{n}.db"), format!("etcd-c-{n}.db.sha256")])
                .collect();
            v.push("etcd-other-z.db".into());
            v.sort();
            v
        };
        let d = tempfile::tempdir().unwrap();
        four(d.path());
        assert_eq!(prune(d.path(), 2, None), names(&["c", "d"]));
        let d = tempfile::tempdir().unwrap();
        four(d.path());
        assert_eq!(prune(d.path(), u32::MAX, Some(30 * 1440)), names(&["c", "d"]));
        let d = tempfile::tempdir().unwrap();
        four(d.path());
        assert_eq!(prune(d.path(), 3, Some(45 * 1440)), names(&["b", "c", "d"]));
        // Every snapshot too old: the newest stays all the same.
        let d = tempfile::tempdir().unwrap();
        four(d.path());
        assert_eq!(prune(d.path(), u32::MAX, Some(60)), names(&["d"]));
    }
}
