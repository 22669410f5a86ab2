//! `whittle convert IN OUT`: re-save a model through the IR.

use std::path::PathBuf;

use whittle_graph::{DataPlacement, SaveOptions, save_model};

use crate::exit::{CliResult, ExitCode};

#[derive(clap::Args)]
pub struct Args {
    input: PathBuf,
    output: PathBuf,
    /// Move tensors of at least --threshold bytes into `<OUT>.data` beside the model.
    #[arg(long, conflicts_with = "inline_data")]
    external_data: bool,
    /// Put every tensor inside the model file.
    #[arg(long)]
    inline_data: bool,
    /// Size in bytes from which a tensor goes to the external data file.
    #[arg(long, default_value_t = whittle_graph::export::DEFAULT_EXTERNAL_THRESHOLD, requires = "external_data")]
    threshold: u64,
}

pub fn run(args: &Args) -> CliResult {
    let model = super::load_checked(&args.input)?;
    let placement = if args.external_data {
        DataPlacement::External { threshold: args.threshold }
    } else if args.inline_data {
        DataPlacement::Inline
    } else {
        DataPlacement::Keep
    };
    save_model(&model, &args.output, &SaveOptions { placement, ..Default::default() })?;
    eprintln!("wrote {}", crate::terminal::safe(&args.output.display().to_string()));
    Ok(ExitCode::Success)
}
