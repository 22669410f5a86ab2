//! `whittle dump MODEL`: the canonical text form.

use std::path::PathBuf;

use whittle_graph::text::{TensorDigest, TextOptions, model_text};

use crate::exit::{CliResult, ExitCode};
use crate::input_dims::parse_input_dims;

#[derive(clap::Args)]
pub struct Args {
    /// The ONNX model.
    model: PathBuf,
    /// Concrete input shape (repeatable), to print inferred shapes of every value: NAME=D1,D2,...
    #[arg(long = "input", value_parser = parse_input_dims)]
    inputs: Vec<(String, Vec<i64>)>,
    /// Print rounded statistics of large float tensors instead of content hashes.
    #[arg(long)]
    stats: bool,
}

pub fn run(args: &Args) -> CliResult {
    let mut model = super::load_checked(&args.model)?;
    if !args.inputs.is_empty() {
        super::infer(&mut model, &args.model, &args.inputs)?;
    }
    let opts = TextOptions { tensors: if args.stats { TensorDigest::Stats } else { TensorDigest::Hash }, ..Default::default() };
    print!("{}", model_text(&model, &opts));
    Ok(ExitCode::Success)
}
