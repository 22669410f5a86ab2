//! `whittle diff A B`: unified diff of two models' canonical text forms.

use std::path::PathBuf;

use whittle_graph::text::{TextOptions, diff_text, model_text};

use crate::exit::{CliResult, ExitCode};

#[derive(clap::Args)]
pub struct Args {
    a: PathBuf,
    b: PathBuf,
    /// Exit with code 4 when the models differ (like `git diff --exit-code`).
    #[arg(long)]
    exit_code: bool,
}

pub fn run(args: &Args) -> CliResult {
    let opts = TextOptions::default();
    let a = model_text(&super::load_checked(&args.a)?, &opts);
    let b = model_text(&super::load_checked(&args.b)?, &opts);
    let diff = diff_text(&a, &b, &args.a.display().to_string(), &args.b.display().to_string());
    print!("{diff}");
    Ok(if args.exit_code && !diff.is_empty() { ExitCode::Differs } else { ExitCode::Success })
}
