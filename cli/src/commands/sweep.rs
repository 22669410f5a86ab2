//! `whittle sweep PIPELINE.yaml --values 0.1,0.2,...`: the pipeline run at each value of one key
//! (by default the `ratio` or `sparsity` of its first step that has one), every run verified and
//! gated; the table of figures written as CSV, Markdown and an SVG chart.
//!
//! Exit codes: 0 the sweep ran (whether or not each point passed its gate: the table says),
//! 2 invalid pipeline/model/data/flags, 1 writing failed.

use std::path::PathBuf;

use anyhow::anyhow;
use whittle_runner::sweep::{SweepOptions, sweep};
use whittle_runner::{RunError, RunOptions};

use crate::exit::{CliError, CliResult, ExitCode};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pipeline: super::PipelineArgs,
    /// The values of the key, comma-separated: 0.1,0.2,0.3,0.4,0.5,0.6.
    #[arg(long, value_delimiter = ',', required = true, num_args = 1..)]
    values: Vec<f64>,
    /// The key varied, as for --set (steps counted from 1): steps.8.prune_channels.ratio.
    /// Default: the `ratio` or `sparsity` of the first step that has one.
    #[arg(long, value_name = "KEY")]
    vary: Option<String>,
    /// Folder for the models that pass, their reports, the sensitivity table and the sweep's
    /// sweep.{csv,md,svg,json}.
    #[arg(long, value_name = "DIR", default_value = "out/sweep")]
    out_dir: PathBuf,
    /// Worker threads for running samples (latency is always single-threaded); at most 1024.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    threads: Option<u64>,
    /// Print the sweep as JSON on stdout instead of the Markdown table.
    #[arg(long)]
    json: bool,
}

use super::invalid_pipeline as invalid;

pub fn run(args: &Args) -> CliResult {
    let overrides = args.pipeline.overrides(None, None);
    let options = SweepOptions {
        key: args.vary.clone(),
        values: args.values.clone(),
        out_dir: args.out_dir.clone(),
        run: RunOptions { threads: args.threads.map(|t| t as usize), progress: true, ..RunOptions::default() },
    };
    let result = match sweep(&args.pipeline.pipeline, &args.pipeline.sets, &overrides, &options) {
        Ok(r) => r,
        Err(RunError::Invalid(e)) => return Err(invalid(e)),
        Err(e) => return Err(CliError::internal(e)),
    };
    let written = result
        .write(&args.out_dir)
        .map_err(|e| CliError::internal(anyhow!("cannot write the sweep into {}: {e}", args.out_dir.display())))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result).map_err(|e| CliError::internal(anyhow!(e)))?);
    } else {
        print!("{}", crate::terminal::safe(&result.markdown()));
        for p in &result.points {
            if let Some(e) = &p.error {
                println!("{} = {}: error: {}", result.key, p.value, crate::terminal::safe(e));
            }
        }
        let names: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
        println!("\nwritten: {}", names.join(", "));
    }
    Ok(ExitCode::Success)
}
