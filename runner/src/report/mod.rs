//! The run report: a JSON document with a stable, versioned schema (`docs/report-schema.md`)
//! and a terminal summary rendered from the same data ([`render_text`]).
//!
//! Schema changes: adding a field is allowed within a version; renaming, removing or changing
//! the meaning of a field bumps [`SCHEMA_VERSION`]. Non-finite numbers are written as `null`,
//! with the reason beside them (see [`crate::verify::json`]).

mod text;

use std::path::Path;

use serde::Serialize;

use crate::gate::GateResult;
use crate::manager::{ModelFigures, StepRecord, Stop};
use crate::verify::{Comparison, LatencyReport};

pub use text::render_text;

/// Version of the JSON layout below.
pub const SCHEMA_VERSION: u32 = 1;

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every check passed; the model was written (when an output path was given).
    Passed,
    /// The gate failed; nothing was written at the output path.
    Failed,
    /// The output was already up to date (same fingerprint); nothing ran.
    Skipped,
    /// A step failed or the graph became invalid (a bug in a pass, or an unsupported model).
    Error,
}

/// The JSON report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub whittle_version: String,
    pub status: RunStatus,
    /// The error message when `status` is `error`.
    pub error: Option<String>,
    /// `sha256:<hex>` over the model, the pipeline text, the effective settings, the data files and
    /// the whittle version; also stored in the output model's metadata (`whittle.fingerprint`).
    pub fingerprint: String,
    pub pipeline: PipelineInfo,
    pub files: Files,
    pub inputs: Vec<InputInfo>,
    pub evaluation: DataInfo,
    pub calibration: Option<DataInfo>,
    /// The model before the first step.
    pub original: ModelInfo,
    /// The model after the last step run (`null` when skipped or failed before any step).
    pub candidate: Option<ModelInfo>,
    pub steps: Vec<StepRecord>,
    /// Set when the pipeline stopped before its last step.
    pub stopped: Option<Stop>,
    pub verification: Option<Verification>,
    pub gate: Option<GateResult>,
    pub notes: Vec<String>,
    /// Set when the run's time limit (`--timeout`) ran out.
    pub timed_out: Option<TimedOutInfo>,
    /// Wall-clock seconds per phase of the run, in the order they ran (not deterministic).
    pub timings: Vec<crate::run::timings::Phase>,
}

/// When the time limit ran out.
#[derive(Debug, Clone, Serialize)]
pub struct TimedOutInfo {
    pub limit_seconds: f64,
    /// e.g. `after step 3 (remove_noops)`, `while tract loaded the candidate`.
    pub during: String,
}

/// The pipeline that ran.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineInfo {
    pub file: String,
    pub description: Option<String>,
    /// Pass names in order.
    pub steps: Vec<String>,
}

/// Files read and written.
#[derive(Debug, Clone, Serialize)]
pub struct Files {
    pub model: String,
    pub output: Option<String>,
    /// True when the candidate was written at `output` by this run.
    pub output_written: bool,
    pub report: Option<String>,
}

/// A model input and the shape it was fixed to.
#[derive(Debug, Clone, Serialize)]
pub struct InputInfo {
    pub name: String,
    pub shape: Vec<i64>,
}

/// A data set used by the run.
#[derive(Debug, Clone, Serialize)]
pub struct DataInfo {
    pub source: String,
    pub samples: usize,
    /// `int`, `text` or `null`.
    pub labels: Option<String>,
}

/// A model's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    /// Size of the file on disk (original) or written (candidate).
    pub file_bytes: u64,
    #[serde(flatten)]
    pub figures: ModelFigures,
    /// The encoded model compressed with zstd (level 3, what `zstd FILE` writes): the size as
    /// users ship it, where zeros and repeated weights count for little.
    pub compressed_bytes: u64,
    /// Nodes per op type.
    pub op_histogram: std::collections::BTreeMap<String, usize>,
}

/// The comparison of the candidate with the original.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// `null` when the candidate could not be run (see `error`).
    pub comparison: Option<Comparison>,
    /// `null` when not measured (`latency_runs: 0`) or not possible.
    pub latency: Option<LatencyReport>,
    /// candidate encoded bytes / original encoded bytes.
    pub size_ratio: f64,
    pub error: Option<String>,
}

impl Report {
    /// The report as pretty JSON, ending with a newline.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"cannot serialize the report: {e}\"}}"));
        s.push('\n');
        s
    }

    /// Writes the JSON report atomically (temporary file in the same folder, then rename).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        whittle_graph::atomic::write(path, self.to_json().as_bytes())
    }
}
