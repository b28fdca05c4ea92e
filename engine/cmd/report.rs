//! `runbook report RUN`: what a drill or an outage run did, for the people who were not there
//! and for the file, as Markdown, JSON, or JUnit for CI dashboards (see engine/report).

use super::{Done, EXIT_INVALID, EXIT_OK, Failure};
use crate::cli::ReportFormat;
use crate::execute::rundir::RunDir;
use crate::report::{build, junit, markdown, prometheus};

pub fn run(run: &str, format: ReportFormat) -> Done {
    let cannot = |e: String| Failure::usage("cannot report on the run", &e, None);
    let dir = RunDir::find(run).map_err(cannot)?;
    let report = build(&dir).map_err(cannot)?;
    let text = match format {
        ReportFormat::Json => serde_json::to_string_pretty(&report).unwrap_or_default() + "\n",
        ReportFormat::Markdown => markdown(&report),
        ReportFormat::Prometheus => prometheus(&report, None),
        ReportFormat::Junit => junit(&report, &dir)
            .map_err(|e| Failure::usage("cannot write the JUnit report", &e, None))?,
    };
    super::print_out(&text)?;
    // A report is written for a failed run too; its exit status says the run did not pass.
    Ok(if report.passed { EXIT_OK } else { EXIT_INVALID })
}
