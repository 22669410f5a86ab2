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

/// A pipeline and what the command line changes in it: the arguments `run` and `sweep` share.
#[derive(clap::Args)]
pub struct PipelineArgs {
    /// The pipeline file (YAML; see docs/pipeline-format.md).
    pub pipeline: std::path::PathBuf,
    /// Use the pipeline as a recipe for this model: the file's inputs, data and export paths no
    /// longer apply (give --input, --eval, --calibration, --out for it; docs/pipeline-format.md).
    #[arg(long)]
    pub model: Option<std::path::PathBuf>,
    /// Override any key of the pipeline (repeatable), the value parsed as YAML:
    /// verify.min_sqnr_db=70, steps.3.constant_folding.max_growth_bytes=65536.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Concrete input shape, replacing the pipeline's (repeatable): NAME=D1,D2,... (NAME=scalar for a scalar)
    #[arg(long = "input", value_parser = crate::input_dims::parse_input_dims)]
    pub inputs: Vec<(String, Vec<i64>)>,
    /// Calibration data: an .npz or .npy file, a folder of images, or random[:SEED].
    #[arg(long)]
    pub calibration: Option<String>,
    /// Evaluation data: an .npz or .npy file, a folder of images, or random[:SEED].
    #[arg(long = "eval")]
    pub eval: Option<String>,
}

impl PipelineArgs {
    /// The command-line overrides, with these output and report paths.
    pub fn overrides(&self, output: Option<std::path::PathBuf>, report: Option<std::path::PathBuf>) -> whittle_runner::Overrides {
        whittle_runner::Overrides {
            model: self.model.clone(),
            inputs: self.inputs.clone(),
            calibration: self.calibration.clone(),
            evaluation: self.eval.clone(),
            output,
            report,
        }
    }
}

/// A pipeline, model or data error: one `error:` line per diagnostic, exit code 2.
pub fn invalid_pipeline(e: whittle_runner::PipelineError) -> CliError {
    let lines: Vec<String> = e.diagnostics.iter().map(|d| d.to_string()).collect();
    CliError::invalid(anyhow::anyhow!("{}", lines.join("\nerror: ")))
}
