//! What the operator sees while a run goes: progress bars on a terminal, plain lines
//! otherwise, or JSON events on stdout for machines; then the summary table and rollback notes.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::journal::{Event, Finish, Record};
use super::state::{RunState, Status};
use crate::graph::StepGraph;
use crate::table::{Color, Table};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputMode {
    /// Progress on a terminal, plain lines otherwise; the summary on stdout.
    Text,
    /// One JSON event per line on stdout (the journal's records).
    Json,
}

enum Style {
    Bars {
        multi: MultiProgress,
        overall: ProgressBar,
        running: Mutex<HashMap<String, ProgressBar>>,
    },
    Plain,
    Json,
}

pub struct Reporter {
    style: Style,
    start: Instant,
    color: bool,
    /// Why a JSON event could not be written to stdout, other than its reader leaving (EPIPE):
    /// the run goes on regardless, and `apply` reports it at the end.
    stdout_failure: Mutex<Option<String>>,
}

impl Reporter {
    pub fn new(mode: OutputMode, total: usize) -> Reporter {
        let color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            && std::io::stdout().is_terminal();
        let style = match mode {
            OutputMode::Json => Style::Json,
            OutputMode::Text if std::io::stderr().is_terminal() => {
                let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
                let overall = multi.add(ProgressBar::new(total as u64));
                overall.set_style(
                    ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} steps {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                );
                Style::Bars {
                    multi,
                    overall,
                    running: Mutex::new(HashMap::new()),
                }
            }
            OutputMode::Text => Style::Plain,
        };
        Reporter {
            style,
            start: Instant::now(),
            color,
            stdout_failure: Mutex::new(None),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Runs `f` with the bars hidden (for prompts and messages).
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.style {
            Style::Bars { multi, .. } => multi.suspend(f),
            _ => f(),
        }
    }

    /// A line for the operator on stderr (never on stdout, which carries data).
    pub fn say(&self, text: &str) {
        self.suspend(|| eprintln!("{text}"));
    }

    pub fn event(&self, r: &Record) {
        let t = self.start.elapsed().as_secs_f64();
        // What etcd said, what a check found: on the console under its step's lines,
        // indented and without a time of its own.
        if let Event::StepOutput {
            text, shown: true, ..
        } = &r.event
            && !matches!(self.style, Style::Json)
        {
            let lines: Vec<String> = text.lines().map(|l| format!("           {l}")).collect();
            self.say(&lines.join("\n"));
            return;
        }
        match &self.style {
            Style::Json => {
                if let Ok(line) = serde_json::to_string(r) {
                    let mut out = std::io::stdout().lock();
                    if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush())
                        && e.kind() != std::io::ErrorKind::BrokenPipe
                    {
                        self.stdout_failure
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert_with(|| e.to_string());
                    }
                }
            }
            Style::Plain => {
                if let Some(line) = plain_line(&r.event) {
                    eprintln!("{t:8.2}s  {line}");
                }
            }
            Style::Bars {
                multi,
                overall,
                running,
            } => {
                let mut running = running.lock().unwrap_or_else(|p| p.into_inner());
                match &r.event {
                    Event::StepStarted { id, .. } => {
                        let pb = multi.add(ProgressBar::new_spinner());
                        pb.set_style(
                            ProgressStyle::with_template("  {spinner} {msg} {elapsed}")
                                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                        );
                        pb.set_message(id.clone());
                        pb.enable_steady_tick(Duration::from_millis(120));
                        if let Some(old) = running.insert(id.clone(), pb) {
                            old.finish_and_clear();
                        }
                    }
                    Event::StepFinished { id, .. } | Event::StepAbandoned { id } => {
                        if let Some(pb) = running.remove(id) {
                            pb.finish_and_clear();
                        }
                        overall.inc(1);
                        if let Some(line) = plain_line(&r.event) {
                            multi.suspend(|| eprintln!("{t:8.2}s  {line}"));
                        }
                    }
                    Event::StepSkipped { .. } => overall.inc(1),
                    other => {
                        if let Some(line) = plain_line(other) {
                            multi.suspend(|| eprintln!("{t:8.2}s  {line}"));
                        }
                    }
                }
            }
        }
    }

    pub fn finish(&self) {
        if let Style::Bars {
            overall, running, ..
        } = &self.style
        {
            for (_, pb) in running.lock().unwrap_or_else(|p| p.into_inner()).drain() {
                pb.finish_and_clear();
            }
            overall.finish_and_clear();
        }
    }

    /// Why events could not be written to stdout, if they could not.
    pub fn stdout_failure(&self) -> Option<String> {
        self.stdout_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn is_json(&self) -> bool {
        matches!(self.style, Style::Json)
    }

    /// The table of every step: data, so it goes to stdout (unless stdout carries JSON).
    pub fn summary(&self, g: &StepGraph, state: &RunState, dry_run: bool) -> String {
        let rows: Vec<[String; 4]> = g
            .order
            .iter()
            .map(|&i| {
                let inst = g.instance(i);
                let status = &state.status[i];
                if dry_run && *status == Status::Succeeded {
                    return [
                        inst.step.clone(),
                        inst.node.clone().unwrap_or_else(|| "local".into()),
                        "would run".to_string(),
                        "-".to_string(),
                    ];
                }
                let took = if state.attempts[i] > 0 || status.satisfied() {
                    format!("{:.2}s", state.duration_ms[i] as f64 / 1000.0)
                } else {
                    "-".into()
                };
                [
                    inst.step.clone(),
                    inst.node.clone().unwrap_or_else(|| "local".into()),
                    status.label(),
                    took,
                ]
            })
            .collect();
        let colors: Vec<Color> = g
            .order
            .iter()
            .map(|&i| match &state.status[i] {
                Status::Succeeded => Color::DarkGreen,
                s if s.failed() || *s == Status::Unknown => Color::DarkRed,
                _ => Color::DarkYellow,
            })
            .collect();
        table(&rows, self.color.then_some(colors.as_slice()))
    }
}

/// STEP / NODE / STATUS / DURATION, aligned; status cells optionally coloured.
pub fn table(rows: &[[String; 4]], colors: Option<&[Color]>) -> String {
    let mut t = Table::new(
        &["STEP", "NODE", "STATUS", "DURATION"],
        &[3],
        colors.is_some(),
    );
    for (k, r) in rows.iter().enumerate() {
        let color = colors.and_then(|c| c.get(k)).map(|&c| (2, c));
        t.row_colored(r.iter().cloned(), color);
    }
    t.render()
}

fn plain_line(e: &Event) -> Option<String> {
    Some(match e {
        Event::StepStarted { id, attempt } if *attempt > 1 => {
            format!("start    {id} (attempt {attempt})")
        }
        Event::StepStarted { id, .. } => format!("start    {id}"),
        Event::StepFinished {
            id,
            status,
            exit_code,
            duration_ms,
            error,
            ..
        } => {
            let secs = *duration_ms as f64 / 1000.0;
            match status {
                Finish::Succeeded => format!("ok       {id} ({secs:.2}s)"),
                Finish::TimedOut => format!("TIMEOUT  {id} after {secs:.2}s"),
                Finish::Failed => {
                    let why = error
                        .clone()
                        .or_else(|| exit_code.map(|c| format!("exit {c}")))
                        .unwrap_or_default();
                    format!("FAILED   {id} ({secs:.2}s): {why}")
                }
            }
        }
        Event::StepRetry {
            id,
            attempt,
            delay_ms,
        } => format!(
            "retry    {id}: attempt {} in {:.1}s",
            attempt + 1,
            *delay_ms as f64 / 1000.0
        ),
        Event::StepSkipped { id, reason } => format!("skip     {id} ({reason})"),
        Event::Approved { id, by, .. } => format!("approved {id} ({by})"),
        Event::Declined { id } => format!("declined {id}"),
        Event::Decision { id, decision } => format!("decision {id}: {decision:?}"),
        Event::Interrupted { running } => format!(
            "interrupted: no new steps; waiting for {} running (Ctrl-C again to abandon them)",
            running.len()
        ),
        Event::StepAbandoned { id } => {
            format!("abandon  {id} (its outcome on the host is unknown)")
        }
        Event::RunStarted { .. } | Event::RunFinished { .. } | Event::StepOutput { .. } => {
            return None;
        }
    })
}
