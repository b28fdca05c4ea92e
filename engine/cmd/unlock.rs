//! `runbook unlock CLUSTER -i INVENTORY`: remove the run lock from the cluster's nodes when
//! the run holding it is provably gone, or, with `--force`, whatever holds it.

use std::time::Duration;

use super::{Done, EXIT_OK, Failure};
use crate::cli::UnlockArgs;
use crate::execute::lock::{NODE_LOCK, describe_lock};
use crate::executor::local::Local;
use crate::executor::ssh::Ssh;
use crate::executor::{Executor, Target};
use crate::inventory::model::Node;
use crate::shell::quote;

pub fn run(args: &UnlockArgs) -> Done {
    let inv = super::load_inventory(&args.inventory)?;
    if inv.cluster != args.cluster {
        return Err(Failure::usage(
            &format!(
                "{} is not the inventory of {}",
                args.inventory.display(),
                args.cluster
            ),
            &format!("it describes cluster {}", inv.cluster),
            Some("name the cluster the inventory describes, or give its own inventory"),
        ));
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return Err(Failure::usage("cannot start the async runtime", &e, None)),
    };
    let nodes: Vec<&Node> = inv.nodes.iter().collect();
    if args.local {
        return rt.block_on(unlock(&Local, &nodes, args));
    }
    let control = match crate::executor::ssh::private_control_dir("unlock") {
        Ok(d) => d,
        Err(e) => {
            return Err(Failure::usage(
                "cannot create the SSH control directory",
                &e,
                None,
            ));
        }
    };
    rt.block_on(async {
        let exec = Ssh::new(control.path().to_path_buf());
        let code = unlock(&exec, &nodes, args).await;
        exec.close().await;
        code
    })
}

/// What became of one node's lock.
enum Outcome {
    NotLocked,
    Removed,
    Kept,
}

async fn unlock<E: Executor>(exec: &E, nodes: &[&Node], args: &UnlockArgs) -> Done {
    let unreachable = exec.connect(nodes).await;
    let mut problems: Vec<String> = unreachable.iter().map(|(_, e)| e.to_string()).collect();
    let mut kept = 0;
    for node in nodes
        .iter()
        .filter(|n| !unreachable.iter().any(|(name, _)| *name == n.name))
    {
        match unlock_node(exec, node, args.force).await {
            Ok(Outcome::Kept) => kept += 1,
            Ok(Outcome::NotLocked | Outcome::Removed) => {}
            Err(e) => problems.push(format!("{}: {e}", node.name)),
        }
    }
    if kept == 0 && problems.is_empty() {
        return Ok(EXIT_OK);
    }
    Err(Failure::Invalid {
        what: format!(
            "{} of {} nodes are still locked or could not be asked",
            kept + problems.len(),
            nodes.len()
        ),
        causes: problems,
        hint: (kept > 0).then(|| {
            format!(
                "make sure that run is over (ask its operator, or look on its host), then `runbook unlock {} -i {}{} --force`",
                args.cluster,
                quote(&args.inventory.display().to_string()),
                if args.local { " --local" } else { "" }
            )
        }),
    })
}

async fn unlock_node<E: Executor>(exec: &E, node: &Node, force: bool) -> Result<Outcome, String> {
    let f = quote(NODE_LOCK);
    let limit = Duration::from_secs(30);
    let read = exec
        .shell(
            Target::Node(node),
            &format!("if [ -e {f} ]; then cat -- {f}; else exit 3; fi"),
            &[],
            limit,
        )
        .await
        .map_err(|e| e.0)?;
    match read.code {
        Some(3) => {
            eprintln!("{}: not locked", node.name);
            return Ok(Outcome::NotLocked);
        }
        Some(0) => {}
        _ => {
            return Err(format!(
                "cannot read {NODE_LOCK}: {}",
                String::from_utf8_lossy(&read.stderr).trim()
            ));
        }
    }
    let text = String::from_utf8_lossy(&read.stdout).into_owned();
    let (who, gone) = describe_lock(&text);
    let why = match (gone, force) {
        (Some(why), _) => why,
        (None, true) => "removed with --force".to_string(),
        (None, false) => {
            eprintln!(
                "{}: locked by {who}: left in place, as runbook cannot tell that run is over",
                node.name
            );
            return Ok(Outcome::Kept);
        }
    };
    // Only the lock as read: one taken meanwhile by a new run stays.
    let remove = format!(
        "if [ \"$(cat -- {f} 2>/dev/null)\" = {was} ]; then rm -f -- {f}; else exit 4; fi",
        was = quote(text.trim_end_matches('\n'))
    );
    let out = exec
        .shell(Target::Node(node), &remove, &[], limit)
        .await
        .map_err(|e| e.0)?;
    match out.code {
        Some(0) => {
            eprintln!("{}: unlocked (was locked by {who}): {why}", node.name);
            Ok(Outcome::Removed)
        }
        Some(4) => {
            eprintln!(
                "{}: the lock changed while it was being removed (another run took it?); left in place",
                node.name
            );
            Ok(Outcome::Kept)
        }
        _ => Err(format!(
            "cannot remove {NODE_LOCK}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}
