//! `snapshot.verify`: refuse an empty, truncated or corrupted snapshot before anything uses it.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{
    Act, Action, ActionInfo, ArgError, Command, Ctx, Native, RunCx, Said, args, node_path,
    schema_of, secs,
};
use crate::executor::BoxFut;
use crate::snapshot::status::Trailer;
use crate::shell::quote;

pub static INFO: ActionInfo = ActionInfo {
    name: "snapshot.verify",
    summary: "check a snapshot's SHA-256 trailer (and structure, locally) before anything uses it",
    default_timeout: secs(300),
    destructive: false,
    idempotent: true,
    schema: schema_of::<Args>,
    parse: |v, ctx| Ok(Action::new(SnapshotVerify::new(args(v)?, ctx)?)),
};

/// Arguments of `snapshot.verify`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(rename = "SnapshotVerifyArgs")]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// The snapshot file: on the operator's machine for a local step, on the node otherwise.
    pub path: String,
    /// Expected sha256 of the whole file (hex), e.g. from a `.sha256` file written at backup time.
    #[serde(default)]
    pub sha256: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SnapshotVerify {
    pub path: String,
    pub sha256: Option<String>,
    /// Checked on the operator's machine (natively) or on a node (with coreutils).
    pub local: bool,
}

impl SnapshotVerify {
    pub fn new(args: Args, ctx: &Ctx) -> Result<Self, ArgError> {
        if args.path.trim().is_empty() || args.path.chars().any(char::is_control) {
            return Err(ArgError::field(
                "path",
                "`path` is empty or contains a control character",
            ));
        }
        if ctx.node.is_some() {
            node_path("path", &args.path)?;
        }
        if let Some(d) = &args.sha256
            && (d.len() != 64 || !d.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(ArgError::field(
                "sha256",
                format!("`sha256` {d:?} is not 64 hex digits"),
            ));
        }
        Ok(SnapshotVerify {
            path: args.path,
            sha256: args.sha256.map(|d| d.to_ascii_lowercase()),
            local: ctx.node.is_none(),
        })
    }
}

impl Act for SnapshotVerify {
    fn commands(&self) -> Vec<Command> {
        let mut out = Vec::new();
        if self.local {
            out.push(Command::native(
                VerifyLocal {
                    path: self.path.clone(),
                },
                format!(
                    "verify {}: the SHA-256 trailer matches its content and every bbolt page checks out",
                    quote(&self.path)
                ),
            ));
            if let Some(d) = &self.sha256 {
                out.push(Command::native(
                    CheckSha256 {
                        path: self.path.clone(),
                        expected: d.clone(),
                    },
                    format!("check that the sha256 of {} is {d}", quote(&self.path)),
                ));
            }
        } else {
            // A `snapshot save` file ends with the sha256 of everything before it,
            // and has one iff its size is 32 more than a multiple of 512.
            let f = quote(&self.path);
            out.push(Command::Shell(format!(
                "f={f}; size=$(stat -c %s -- \"$f\"); test $((size % 512)) -eq 32 || {{ echo \"$f: no sha256 trailer (size $size)\" >&2; exit 1; }}; \
test \"$(head -c $((size - 32)) -- \"$f\" | sha256sum | cut -d' ' -f1)\" = \"$(tail -c 32 -- \"$f\" | od -An -v -tx1 | tr -d ' \\n')\" || {{ echo \"$f: sha256 trailer does not match the content\" >&2; exit 1; }}"
            )));
            if let Some(d) = &self.sha256 {
                out.push(Command::Shell(format!(
                    "test \"$(sha256sum < {f} | cut -d' ' -f1)\" = {d} || {{ echo {}: sha256 differs from {d} >&2; exit 1; }}",
                    f
                )));
            }
        }
        out
    }
}

/// A local snapshot file checked natively: SHA-256 trailer and every bbolt page.
#[derive(Debug)]
struct VerifyLocal {
    path: String,
}

impl Native for VerifyLocal {
    fn run<'a>(&'a self, cx: &'a RunCx<'a>) -> BoxFut<'a, Result<Said, String>> {
        Box::pin(async move {
            let path = &self.path;
            let local = cx.files.local(path).await?;
            let p = local.path.clone();
            let st = tokio::task::spawn_blocking(move || crate::snapshot::status::status(&p))
                .await
                .map_err(|e| format!("verifying {path}: {e}"))?
                .map_err(|e| e.to_string())?;
            match st.sha256 {
                Trailer::Ok => {}
                Trailer::Mismatch => {
                    return Err(format!(
                        "{path}: the SHA-256 trailer does not match the content (corrupted or truncated)"
                    ));
                }
                Trailer::Absent => {
                    return Err(format!(
                        "{path} has no SHA-256 trailer: a copy of member/snap/db, not a `snapshot save` file"
                    ));
                }
                Trailer::Damaged(damage) => return Err(format!("{path} is damaged: {damage}")),
            }
            // Copies of it to the nodes are checked against this digest without hashing again.
            cx.files.remember(path, st.file_sha256.clone());
            let checked = format!(
                "{path}: {} bytes, sha256 {}, trailer ok, every bbolt page checked; revision {}, {} keys, hash {}",
                st.file_size, st.file_sha256, st.revision, st.total_keys, st.hash
            );
            Ok(match local.fetched {
                Some(f) => Said::shown(format!("{f}\n{checked}")),
                None => Said::logged(checked),
            })
        })
    }
}

/// A local file's sha256 compared with a digest recorded at backup time.
#[derive(Debug)]
struct CheckSha256 {
    path: String,
    expected: String,
}

impl Native for CheckSha256 {
    fn run<'a>(&'a self, cx: &'a RunCx<'a>) -> BoxFut<'a, Result<Said, String>> {
        Box::pin(async move {
            let path = &self.path;
            let p = cx.files.local(path).await?.path;
            let e = self.expected.clone();
            tokio::task::spawn_blocking(move || crate::snapshot::check_sha256(&p, &e))
                .await
                .map_err(|e| format!("hashing {path}: {e}"))?
                .map(|d| Said::logged(format!("{path}: sha256 {d} as expected")))
                .map_err(|e| e.to_string())
        })
    }
}
