//! Shared helpers for the integration tests: locating the shared models and test data (through
//! [`whittle_testenv`], which decides when a missing one skips and when it fails), and running
//! passes through the real pass manager.

use std::path::PathBuf;

use whittle_graph::Model;
use whittle_runner::manager::{ManagerOptions, ManagerOutcome, StepError, StepRecord, run_steps};
use whittle_runner::pipeline::Step;

pub use whittle_testenv::{peer_python, repo_root, shared_dir};

/// The three PP-OCR models, or `None` with a printed reason when ../shared is missing (a failure
/// under CI).
pub fn shared_models() -> Option<Vec<PathBuf>> {
    let dir = shared_dir()?;
    Some(SHARED_MODELS.iter().map(|m| dir.join("models").join(m)).collect())
}

pub const SHARED_MODELS: [&str; 3] = ["ch_ppocr_mobile_v2.0_cls_infer.onnx", "ch_PP-OCRv4_det_infer.onnx", "ch_PP-OCRv4_rec_infer.onnx"];

/// A file in `testdata/`.
pub fn testdata(name: &str) -> PathBuf {
    repo_root().join("testdata").join(name)
}

pub mod fixtures;

/// Runs registered passes (default parameters) with the real pass manager: shape inference with
/// these input shapes before each step, validation and type checks after each.
pub fn run_passes(model: &mut Model, passes: &[&str], input_shapes: &[(String, Vec<i64>)]) -> Result<ManagerOutcome, StepError> {
    let steps: Vec<Step> =
        passes.iter().map(|p| Step::with_defaults(whittle_passes::lookup(p).unwrap_or_else(|| panic!("no pass named {p}")))).collect();
    let options = ManagerOptions { input_shapes: input_shapes.to_vec(), ..Default::default() };
    run_steps(model, &steps, &options, &mut |_, _| true)
}

/// Runs one registered pass with the real manager; panics on a step error.
pub fn run_pass(model: &mut Model, pass: &str, input_shapes: &[(String, Vec<i64>)]) -> StepRecord {
    let outcome = run_passes(model, &[pass], input_shapes).unwrap_or_else(|e| panic!("{e}"));
    outcome.steps.into_iter().next().expect("one step ran")
}
