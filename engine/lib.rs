//! runbook: a declarative runbook engine for etcd backup, restore and maintenance.
//! Pipeline: plan text -> raw model -> Runbook (compile) -> StepGraph (graph) -> lints.
// Command output goes through `cmd::print_out`, which handles a closed or full stdout.
#![deny(clippy::print_stdout)]

/// `eprintln!` for this crate, in place of std's (it is defined before the modules, so its
/// textual scope covers them all): std's panics when stderr cannot be written, as after
/// `runbook plan ... 2>&1 | head -1` once `head` has exited. A message nobody can read is
/// dropped instead; the exit status still tells.
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `eprint!` likewise.
macro_rules! eprint {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}

pub mod action;
pub mod check;
pub mod cli;
pub mod cmd;
pub mod compile;
pub mod diag;
pub mod etcd;
pub mod execute;
pub mod executor;
pub mod graph;
pub mod input;
pub mod inventory;
pub mod kube;
pub mod lint;
pub mod located;
pub mod pipeline;
pub mod plan;
pub mod report;
pub mod schema;
pub mod snapshot;
pub mod table;
pub mod yaml;

// Shared with the lab through a crate of their own (engine/shared/lib.rs says why); kept at
// their old paths so that `crate::shell::quote` and `crate::pod` read as before.
pub use runbook_shared::{pod, shell};

/// The process's one TLS crypto provider for its HTTPS clients (S3, members' /metrics):
/// ring, as etcd's gRPC TLS already uses; set once, before the first client.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
