//! The pass manager: runs a pipeline's steps in order on the IR.
//!
//! Before the first step, and after every step, shape inference runs with the pipeline's input
//! shapes, so each pass sees fresh shapes and each step's figures (nodes, parameters, encoded
//! bytes, MACs) are measured on an up-to-date graph. After every step the IR's structure is
//! validated, shapes and types are inferred, then element types are checked (so values a pass
//! created are checked too); any problem is an error that names the step ("after step 3
//! (fold_batchnorm): ..."). Debugging
//! aids: stop after a given step, and write the canonical text form after each step.
//!
//! The manager never runs a model. A hook called after each step can (the runner's differential
//! check does) and can stop the pipeline.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use whittle_graph::Model;
use whittle_graph::shape::infer::{InferOptions, infer_shapes};
use whittle_graph::text::{TextOptions, model_text};
use whittle_graph::validate::{Checks, validate_with};
use whittle_passes::measure::Measure;
use whittle_passes::pass::{Declined, PassContext};

use crate::pipeline::Step;

/// Size and cost of a model at one point of the pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelFigures {
    /// Operations, `Constant` nodes included.
    pub nodes: usize,
    /// Elements of all constant tensors.
    pub parameters: u64,
    /// Of those, the elements that are not zero (what pruning lowers).
    pub nonzero_parameters: u64,
    pub parameter_bytes: u64,
    /// Size of the model as whittle would write it (all tensors inline).
    pub encoded_bytes: u64,
    /// Multiply-accumulates of Conv/ConvTranspose/Gemm/MatMul layers with known shapes.
    pub macs: u64,
    /// Such layers whose shapes are unknown (their MACs are not in `macs`).
    pub layers_with_unknown_macs: usize,
}

impl ModelFigures {
    /// Measures `model` (run shape inference first for MACs).
    pub fn of(model: &Model) -> ModelFigures {
        ModelFigures::from_stats(&whittle_graph::stats::model_stats(model), whittle_graph::encode_model(model).len())
    }

    /// The figures of a model from its statistics and the length of its encoding (for callers
    /// that have both already).
    pub fn from_stats(stats: &whittle_graph::stats::ModelStats, encoded_len: usize) -> ModelFigures {
        ModelFigures {
            nodes: stats.nodes,
            parameters: stats.parameters,
            nonzero_parameters: stats.nonzero_parameters,
            parameter_bytes: stats.parameter_bytes,
            encoded_bytes: encoded_len as u64,
            macs: stats.total_macs,
            layers_with_unknown_macs: stats.layers_with_unknown_macs,
        }
    }
}

/// Result of the numeric check after a step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Differential {
    pub samples: usize,
    /// Largest over outputs of max |original - candidate| / max |original|.
    #[serde(serialize_with = "crate::verify::json::finite_or_null")]
    pub relative_max_error: f64,
    /// The output with that error.
    pub worst_output: String,
    /// Lowest per-output SQNR in dB (`null` when the outputs are identical).
    #[serde(serialize_with = "crate::verify::json::finite_or_null")]
    pub min_sqnr_db: f64,
    pub tolerance: f64,
    pub passed: bool,
    /// Set when the candidate could not be run.
    pub error: Option<String>,
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepRecord {
    /// 1-based position in the pipeline.
    pub index: usize,
    pub pass: String,
    pub exact: bool,
    /// Parameters as written in the pipeline (`null`: defaults).
    pub params: serde_json::Value,
    /// The model after the step.
    pub after: ModelFigures,
    /// Time spent in the pass itself.
    pub wall_ms: f64,
    pub applied: usize,
    /// What the rewrites were, one line each where the pass records them.
    pub changes: Vec<String>,
    pub declined: Vec<Declined>,
    pub notes: Vec<String>,
    pub differential: Option<Differential>,
}

/// Why the pipeline stopped before its last step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// `--stop-after`.
    Requested,
    /// The differential check after the step failed.
    DifferentialFailed,
    /// The run's time limit (`--timeout`) ran out; the step itself completed.
    TimedOut,
}

/// Where the pipeline stopped early.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stop {
    pub index: usize,
    pub pass: String,
    pub reason: StopReason,
}

/// Options of [`run_steps`].
#[derive(Debug, Clone, Default)]
pub struct ManagerOptions {
    /// Concrete input shapes for shape inference and the passes.
    pub input_shapes: Vec<(String, Vec<i64>)>,
    /// Run steps 1..=N only.
    pub stop_after: Option<usize>,
    /// Write the canonical text form before the first step and after each step here.
    pub dump_dir: Option<PathBuf>,
    /// Where relative paths in pass parameters resolve (the pipeline file's folder).
    pub base_dir: Option<PathBuf>,
}

/// The steps run, and where the pipeline stopped if it did not reach the end.
#[derive(Debug, Clone)]
pub struct ManagerOutcome {
    pub steps: Vec<StepRecord>,
    pub stopped: Option<Stop>,
}

/// What went wrong in a step.
#[derive(Debug, thiserror::Error)]
pub enum StepErrorKind {
    #[error("the pass failed: {0}")]
    Pass(String),
    /// The pass cannot take this model (invalid input, exit 2 at the CLI).
    #[error("the model is not one this pass can take: {0}")]
    Unsupported(String),
    #[error("the graph is invalid: {0}")]
    Invalid(String),
    #[error("shape inference failed: {0}")]
    Infer(String),
    #[error("cannot write {}: {error}", path.display())]
    Dump { path: PathBuf, error: std::io::Error },
}

/// A step failed; `completed` holds the steps before it.
#[derive(Debug, thiserror::Error)]
#[error("{} step {index} ({pass}): {kind}", if matches!(kind, StepErrorKind::Pass(_) | StepErrorKind::Unsupported(_)) { "in" } else { "after" })]
pub struct StepError {
    /// 1-based; 0 = before the first step.
    pub index: usize,
    pub pass: String,
    pub kind: StepErrorKind,
    pub completed: Vec<StepRecord>,
}

/// Called after each step with its record and the model; may fill `record.differential`.
/// Returning a reason stops the pipeline after this step.
pub type AfterStep<'a> = dyn FnMut(&mut StepRecord, &Model) -> Option<StopReason> + 'a;

/// Runs `steps` on `model` (see the module doc). Passes that need data get `measure`.
pub fn run_steps(
    model: &mut Model,
    steps: &[Step],
    options: &ManagerOptions,
    measure: Option<&dyn Measure>,
    after: &mut AfterStep<'_>,
) -> Result<ManagerOutcome, StepError> {
    let infer_opts = InferOptions { input_shapes: options.input_shapes.clone() };
    let mut ctx = match measure {
        Some(m) => PassContext::with_measure(m),
        None => PassContext::default(),
    };
    ctx.base_dir = options.base_dir.as_deref();
    let mut done: Vec<StepRecord> = Vec::new();
    let fail = |index: usize, pass: &str, kind: StepErrorKind, done: Vec<StepRecord>| StepError {
        index,
        pass: pass.to_string(),
        kind,
        completed: done,
    };

    infer_shapes(model, &infer_opts).map_err(|e| fail(0, "input", StepErrorKind::Infer(e.to_string()), Vec::new()))?;
    if let Some(dir) = &options.dump_dir {
        dump(dir, 0, "original", model).map_err(|k| fail(0, "original", k, Vec::new()))?;
    }
    let last = options.stop_after.unwrap_or(steps.len()).min(steps.len());
    for (i, step) in steps.iter().take(last).enumerate() {
        let index = i + 1;
        let start = Instant::now();
        let result = step.pass.run(model, &ctx);
        let wall_ms = start.elapsed().as_secs_f64() * 1e3;
        let report = match result {
            Ok(r) => r,
            Err(e) if e.unsupported_model => return Err(fail(index, step.name, StepErrorKind::Unsupported(e.message), done)),
            Err(e) => return Err(fail(index, step.name, StepErrorKind::Pass(e.message), done)),
        };
        // Structure first (inference needs a sound graph), then the element types, which only
        // inference gives the values a pass created.
        let issues = validate_with(model, Checks::Structure);
        if !issues.is_empty() {
            return Err(fail(index, step.name, StepErrorKind::Invalid(whittle_graph::error::format_issues(&issues)), done));
        }
        if let Err(e) = infer_shapes(model, &infer_opts) {
            return Err(fail(index, step.name, StepErrorKind::Infer(e.to_string()), done));
        }
        let issues = validate_with(model, Checks::Types);
        if !issues.is_empty() {
            return Err(fail(index, step.name, StepErrorKind::Invalid(whittle_graph::error::format_issues(&issues)), done));
        }
        if let Some(dir) = &options.dump_dir
            && let Err(k) = dump(dir, index, step.name, model)
        {
            return Err(fail(index, step.name, k, done));
        }
        let mut record = StepRecord {
            index,
            pass: step.name.to_string(),
            exact: step.exact,
            params: step.params.clone(),
            after: ModelFigures::of(model),
            wall_ms,
            applied: report.applied,
            changes: report.changes,
            declined: report.declined,
            notes: report.notes,
            differential: None,
        };
        let stop = after(&mut record, model);
        done.push(record);
        if let Some(reason) = stop {
            return Ok(ManagerOutcome { steps: done, stopped: Some(Stop { index, pass: step.name.to_string(), reason }) });
        }
    }
    let stopped = (last < steps.len()).then(|| Stop {
        index: last,
        pass: last.checked_sub(1).map_or("(none)", |i| steps[i].name).to_string(),
        reason: StopReason::Requested,
    });
    Ok(ManagerOutcome { steps: done, stopped })
}

/// The file `--dump-after-each` writes before step 1 (`index` 0, "original") and after each step.
pub fn dump_file_name(index: usize, name: &str) -> String {
    format!("{index:02}-{name}.txt")
}

/// Writes `DIR/NN-name.txt`.
fn dump(dir: &Path, index: usize, name: &str, model: &Model) -> Result<(), StepErrorKind> {
    let path = dir.join(dump_file_name(index, name));
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&path, model_text(model, &TextOptions::default())))
        .map_err(|error| StepErrorKind::Dump { path, error })
}
