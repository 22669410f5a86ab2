//! `whittle run PIPELINE.yaml`: run a pipeline, verify the result with tract, gate, write.
//!
//! Exit codes: 0 passed (or up to date), 2 invalid pipeline/model/data (nothing written),
//! 3 the gate failed (only the report written), 1 a step failed or writing failed.

use std::path::PathBuf;

use anyhow::anyhow;
use whittle_runner::report::render_text;
use whittle_runner::{Pipeline, RunError, RunOptions, RunStatus, run_pipeline};

use crate::exit::{CliError, CliResult, ExitCode};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pipeline: super::PipelineArgs,
    /// Where to write the model (only when the gate passes).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Where to write the JSON report (default: the output path with .report.json).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Run the steps up to this one (1-based index or pass name), then verify and report.
    #[arg(long, value_name = "STEP")]
    stop_after: Option<String>,
    /// Write the text form of the model before the first step and after each step into DIR.
    #[arg(long, value_name = "DIR")]
    dump_after_each: Option<PathBuf>,
    /// Redo the work even when the output is up to date.
    #[arg(long)]
    force: bool,
    /// Worker threads for running evaluation samples (latency is always single-threaded); at most 1024.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    threads: Option<u64>,
    /// The most memory the run may need, e.g. 512M or 8G (default: 3/4 of this machine's or cgroup's memory).
    /// A run estimated above it is refused with exit 2 before it starts.
    #[arg(long, value_name = "SIZE", value_parser = whittle_runner::memory::parse_size)]
    max_memory: Option<u64>,
    /// End the run after this many seconds: exit 3, nothing exported, the report saying what finished.
    #[arg(long, value_name = "SECONDS", value_parser = parse_timeout)]
    timeout: Option<std::time::Duration>,
    /// Print the JSON report on stdout instead of the summary.
    #[arg(long)]
    json: bool,
}

/// `--timeout`: positive seconds, fractions allowed.
fn parse_timeout(text: &str) -> Result<std::time::Duration, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s < 1e9 => Ok(std::time::Duration::from_secs_f64(s)),
        _ => Err(format!("`{text}` is not a number of seconds above 0 (e.g. 600 or 0.5)")),
    }
}

use super::invalid_pipeline as invalid;

pub fn run(args: &Args) -> CliResult {
    let mut pipeline = Pipeline::load_with_sets(&args.pipeline.pipeline, &args.pipeline.sets).map_err(invalid)?;
    let overrides = args.pipeline.overrides(args.out.clone(), args.report.clone());
    pipeline.apply(&overrides).map_err(invalid)?;
    let options = RunOptions {
        force: args.force,
        stop_after: args.stop_after.clone(),
        dump_after_each: args.dump_after_each.clone(),
        threads: args.threads.map(|t| t as usize),
        progress: true,
        timeout: args.timeout,
        max_memory: args
            .max_memory
            .map(|b| whittle_runner::memory::MemoryLimit::set(b, format!("--max-memory {}", whittle_runner::memory::human(b)))),
    };
    let outcome = match run_pipeline(&pipeline, &options) {
        Ok(o) => o,
        Err(RunError::Invalid(e)) => return Err(invalid(e)),
        Err(RunError::Step { error, report }) => {
            if !args.json {
                print!("{}", crate::terminal::safe(&render_text(&report)));
            }
            // A model the pass cannot take is invalid input (2); anything else failed (1).
            if matches!(error.kind, whittle_runner::manager::StepErrorKind::Unsupported(_)) {
                return Err(CliError::invalid(anyhow!("{error}")));
            }
            return Err(CliError::internal(anyhow!("{error}")));
        }
        Err(e) => return Err(CliError::internal(e)),
    };
    if args.json {
        print!("{}", outcome.report.to_json());
    } else {
        print!("{}", crate::terminal::safe(&render_text(&outcome.report)));
    }
    match outcome.status {
        RunStatus::Passed | RunStatus::Skipped => Ok(ExitCode::Success),
        RunStatus::Failed => {
            let failed: Vec<String> = outcome
                .report
                .gate
                .iter()
                .flat_map(|g| {
                    g.failure
                        .iter()
                        .cloned()
                        .chain(g.checks.iter().filter(|c| c.status == whittle_runner::gate::CheckStatus::Failed).map(|c| c.name.clone()))
                })
                .collect();
            eprintln!(
                "error: the verification gate failed ({}); nothing was written at the output path",
                crate::terminal::safe(&failed.join("; "))
            );
            Ok(ExitCode::GateFailed)
        }
        RunStatus::Error => Err(CliError::internal(anyhow!("{}", outcome.report.error.unwrap_or_default()))),
    }
}
