//! One module per subcommand.

pub mod convert;
pub mod diff;
pub mod dump;
pub mod groups;
pub mod inspect;
pub mod passes;
pub mod run;
pub mod sweep;

use std::path::Path;

use whittle_graph::Model;
use whittle_graph::shape::infer::{InferOptions, infer_shapes};

use crate::exit::CliError;

/// A model file and concrete input shapes: the arguments of `inspect` and `dump`.
#[derive(clap::Args)]
pub struct ModelArgs {
    /// The ONNX model.
    pub model: std::path::PathBuf,
    /// Concrete input shape (repeatable), for inferred shapes and MACs of models with symbolic
    /// dims: NAME=D1,D2,...
    #[arg(long = "input", value_parser = crate::input_dims::parse_input_dims)]
    pub inputs: Vec<(String, Vec<i64>)>,
}

/// Loads a model and validates it; any problem is invalid input (exit code 2).
pub fn load_checked(path: &Path) -> Result<Model, CliError> {
    let model = whittle_graph::load_model(path)?;
    let issues = whittle_graph::validate::validate(&model);
    if !issues.is_empty() {
        return Err(CliError::from(whittle_graph::ModelError::Invalid { path: path.to_path_buf(), issues }));
    }
    Ok(model)
}

/// Runs shape inference with the given input shapes.
pub fn infer(model: &mut Model, path: &Path, inputs: &[(String, Vec<i64>)]) -> Result<whittle_graph::shape::infer::InferReport, CliError> {
    infer_shapes(model, &InferOptions { input_shapes: inputs.to_vec() })
        .map_err(|e| CliError::invalid(anyhow::anyhow!("{}: {e}", path.display())))
}
