//! The `Pass` trait and what a pass receives and returns.

use serde::Serialize;
use whittle_graph::Model;

use crate::measure::Measure;

/// What a pass receives besides the model. Passes never run a model themselves: measurements on
/// data (calibration statistics, the fidelity of a candidate) come through [`Measure`], when the
/// pipeline has calibration data. Shapes are on the graph's values (the manager runs shape
/// inference with the pipeline's input shapes before every step).
#[derive(Default, Clone, Copy)]
#[non_exhaustive]
pub struct PassContext<'a> {
    /// Measurements on the calibration data; `None` when the pipeline has none.
    pub measure: Option<&'a dyn Measure>,
    /// The folder relative paths in pass parameters resolve against (the pipeline file's).
    pub base_dir: Option<&'a std::path::Path>,
}

impl<'a> PassContext<'a> {
    pub fn with_measure(measure: &'a dyn Measure) -> PassContext<'a> {
        PassContext { measure: Some(measure), base_dir: None }
    }

    /// A path from a pass parameter: relative ones resolve against [`PassContext::base_dir`].
    pub fn resolve(&self, path: &str) -> std::path::PathBuf {
        match self.base_dir {
            Some(dir) if std::path::Path::new(path).is_relative() => dir.join(path),
            _ => std::path::PathBuf::from(path),
        }
    }

    /// The measurement interface, or the error a pass that needs data gives without it.
    pub fn require_measure(&self, pass: &str) -> Result<&'a dyn Measure, PassError> {
        self.measure.ok_or_else(|| {
            PassError::unsupported_model(format!(
                "{pass} needs calibration data: give the pipeline a `calibration:` section or pass --calibration FILE"
            ))
        })
    }
}

/// A pattern a pass found but did not rewrite, and why. Reported to the user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Declined {
    /// The node (name, or `<OpType at N>` when unnamed).
    pub node: String,
    pub op_type: String,
    pub reason: String,
}

/// What one run of a pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PassReport {
    /// Rewrites applied (nodes folded, removed, converted...).
    pub applied: usize,
    /// What the rewrites were, one line each where the pass says ("bn3: folded into conv3").
    pub changes: Vec<String>,
    pub declined: Vec<Declined>,
    /// Anything else the user should know (e.g. "input x pinned to [1,3,48,192]").
    pub notes: Vec<String>,
}

impl PassReport {
    /// Counts one applied rewrite and records what it was.
    pub fn record(&mut self, change: impl Into<String>) {
        self.applied += 1;
        self.changes.push(change.into());
    }

    pub fn decline(&mut self, node: impl Into<String>, op_type: impl Into<String>, reason: impl Into<String>) {
        self.declined.push(Declined { node: node.into(), op_type: op_type.into(), reason: reason.into() });
    }
}

/// The parameters of a pass that takes none (an empty map, or no map, in a pipeline).
#[derive(Debug, Default, serde::Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// A pass failed outright (as opposed to declining a pattern).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct PassError {
    pub message: String,
    /// The input model is what the pass cannot take (an opset too old, an op without a
    /// conversion rule): invalid input for the user (exit 2), not a failure of whittle (exit 1).
    pub unsupported_model: bool,
}

impl PassError {
    /// The pass failed.
    pub fn new(message: impl Into<String>) -> PassError {
        PassError { message: message.into(), unsupported_model: false }
    }

    /// The model is not one this pass can take.
    pub fn unsupported_model(message: impl Into<String>) -> PassError {
        PassError { message: message.into(), unsupported_model: true }
    }
}

/// A configured graph transformation.
pub trait Pass {
    fn run(&self, model: &mut Model, ctx: &PassContext<'_>) -> Result<PassReport, PassError>;
}

/// Static facts about a pass type, used by the registry.
pub trait PassDef: Pass + Sized + 'static {
    /// The registry name (also the YAML key and the file name).
    const NAME: &'static str;
    /// One line for `whittle passes`.
    const SUMMARY: &'static str;
    /// Exact passes leave outputs unchanged up to float rounding; lossy ones are judged by metrics.
    const EXACT: bool;
    /// Typed parameters with defaults; unknown fields are rejected.
    type Params: serde::de::DeserializeOwned + Serialize + Default;
    /// (name, type, description) of each parameter, in the order of `Params`.
    const PARAMS: &'static [(&'static str, &'static str, &'static str)];
    fn new(params: Self::Params) -> Self;
}
