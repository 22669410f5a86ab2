//! `whittle passes`: every registered pass with its parameters, defaults and a one-line
//! description (`--markdown` prints the README table, `--json` a machine-readable list).

use serde::Serialize;
use whittle_passes::registry::{PASSES, ParamInfo, markdown_table};

use crate::exit::{CliError, CliResult, ExitCode};

#[derive(clap::Args)]
pub struct Args {
    /// Print a Markdown table (the README's passes table).
    #[arg(long, conflicts_with = "json")]
    markdown: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct PassEntry {
    name: &'static str,
    exact: bool,
    summary: &'static str,
    params: Vec<ParamInfo>,
}

pub fn run(args: &Args) -> CliResult {
    if args.markdown {
        print!("{}", markdown_table());
        return Ok(ExitCode::Success);
    }
    let entries: Vec<PassEntry> =
        PASSES.iter().map(|p| PassEntry { name: p.name, exact: p.exact, summary: p.summary, params: p.params() }).collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&entries).map_err(CliError::internal)?);
        return Ok(ExitCode::Success);
    }
    for e in &entries {
        println!("{:<18} {:<6} {}", e.name, if e.exact { "exact" } else { "lossy" }, e.summary);
        for p in &e.params {
            println!("{:<26}{}: {} = {}  {}", "", p.name, p.ty, p.default, p.description);
        }
    }
    Ok(ExitCode::Success)
}
