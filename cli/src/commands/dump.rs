//! `whittle dump MODEL`: the canonical text form.

use whittle_graph::text::{TensorDigest, TextOptions, model_text};

use crate::exit::{CliResult, ExitCode};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: super::ModelArgs,
    /// Print rounded statistics of large float tensors instead of content hashes.
    #[arg(long)]
    stats: bool,
}

pub fn run(args: &Args) -> CliResult {
    let mut model = super::load_checked(&args.target.model)?;
    if !args.target.inputs.is_empty() {
        super::infer(&mut model, &args.target.model, &args.target.inputs)?;
    }
    let opts = TextOptions { tensors: if args.stats { TensorDigest::Stats } else { TensorDigest::Hash }, ..Default::default() };
    print!("{}", model_text(&model, &opts));
    Ok(ExitCode::Success)
}
