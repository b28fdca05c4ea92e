//! `runbook completions SHELL` and `runbook man`: generated from the clap definitions, so they
//! can never disagree with the commands.

use std::path::Path;

use clap::CommandFactory;

use super::{Done, EXIT_OK, Failure, print_out};
use crate::cli::Cli;

/// Both are rendered in memory first: clap_complete panics when its writer fails, and a
/// closed pipe is handled in one place (`print_out`).
pub fn completions(shell: clap_complete::Shell) -> Done {
    let mut text = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "runbook", &mut text);
    print_out(&String::from_utf8_lossy(&text))?;
    Ok(EXIT_OK)
}

/// runbook(1) on stdout, or with `--out DIR` a page per command: runbook.1, runbook-apply.1,
/// runbook-snapshot-status.1, ... (hidden commands have none).
pub fn man(out: Option<&Path>) -> Done {
    let mut root = Cli::command().disable_help_subcommand(true);
    // Building sets each subcommand's display name (`runbook-apply`), which names its page.
    root.build();
    let Some(dir) = out else {
        print_out(&page(&root))?;
        return Ok(EXIT_OK);
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| Failure::usage(&format!("cannot create {}", dir.display()), &e, None))?;
    let mut pages = Vec::new();
    collect(&root, &mut pages);
    for cmd in &pages {
        let name = format!("{}.1", cmd.get_display_name().unwrap_or(cmd.get_name()));
        let path = dir.join(name);
        std::fs::write(&path, page(cmd))
            .map_err(|e| Failure::usage(&format!("cannot write {}", path.display()), &e, None))?;
    }
    eprintln!("wrote {} man pages to {}", pages.len(), dir.display());
    Ok(EXIT_OK)
}

fn collect<'a>(cmd: &'a clap::Command, pages: &mut Vec<&'a clap::Command>) {
    pages.push(cmd);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        collect(sub, pages);
    }
}

/// One page: clap_mangen's sections, then the text shown after the help as sections of its
/// own. clap_mangen would print that text as one filled paragraph, which runs the lines of an
/// example together; here prose is filled, an "Exit status:" paragraph gets EXIT STATUS, and
/// the examples are set line for line (`.nf`), with `-` and `\` escaped so that they paste
/// into a shell as they read.
fn page(cmd: &clap::Command) -> String {
    let after = cmd
        .get_after_help()
        .map(|s| s.to_string())
        .unwrap_or_default();
    let version = cmd.get_version().map(str::to_string);
    // Those two are rendered below; the rest is clap_mangen's, in its order.
    let mut bare = cmd.clone().after_help(None).after_long_help(None);
    if version.is_some() {
        bare = bare.version(None);
    }
    let mut text = Vec::new();
    // Writing into memory does not fail.
    let _ = clap_mangen::Man::new(bare)
        .source(format!("runbook {}", env!("CARGO_PKG_VERSION")))
        .render(&mut text);
    let mut page = String::from_utf8_lossy(&text).into_owned();
    let mut section = "";
    for paragraph in after.split("\n\n") {
        let (heading, body) = match paragraph.split_once('\n') {
            Some((first, lines)) if first.starts_with("Example") => ("EXAMPLES", lines),
            _ => match paragraph.strip_prefix("Exit status: ") {
                Some(rest) => ("\"EXIT STATUS\"", rest),
                None => ("NOTES", paragraph),
            },
        };
        if heading == section {
            page.push_str(".PP\n");
        } else {
            page.push_str(&format!(".SH {heading}\n"));
            section = heading;
        }
        if heading == "EXAMPLES" {
            page.push_str(".nf\n");
            for line in body.lines() {
                page.push_str(&roff_line(line));
                page.push('\n');
            }
            page.push_str(".fi\n");
        } else {
            page.push_str(&roff_line(body));
            page.push('\n');
        }
    }
    if let Some(v) = version {
        page.push_str(&format!(".SH VERSION\nv{}\n", roff_line(&v)));
    }
    page
}

/// A line of text in roff: a backslash, a dash and a quote are escaped (groff prints a bare
/// `-` as a hyphen and `'` as a curly quote, which a shell takes for neither), and a leading
/// `.` is not a request. `\*(Aq` is defined by clap_mangen's preamble.
fn roff_line(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\e")
        .replace('-', "\\-")
        .replace('\'', "\\*(Aq");
    if escaped.starts_with('.') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}
