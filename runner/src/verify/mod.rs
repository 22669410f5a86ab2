//! Running models with tract and judging a candidate against its original.
//!
//! - [`load_model`] turns ONNX bytes into a [`Runnable`] with concrete input shapes;
//!   [`run_all`] runs it on every sample of an [`InputSet`](crate::data::InputSet).
//! - [`metrics`] holds the plain metric functions (fidelity, agreement, CTC, mask IoU, labeled
//!   accuracy); [`compare()`] applies them to two models' outputs and returns a [`Comparison`].
//! - [`measure_latency`] times the two models interleaved, with a bootstrap confidence interval
//!   on the ratio of medians.
//!
//! Results derive `Serialize` with stable field names. JSON has no infinity or NaN: such values
//! are written as `null` (see [`json`]).

mod compare;
pub mod json;
mod latency;
pub mod metrics;
mod model;

pub use compare::{CompareOptions, Comparison, CtcComparison, OutputComparison, compare, compare_models};
pub use latency::{LatencyOptions, LatencyRatio, LatencyReport, LatencyStats, measure_latency};
pub use model::{ModelInput, Runnable, datum_type, load_model, run_all};

use crate::data::DataError;

/// A model could not be loaded, run or compared.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// tract returned an error during `what` (e.g. "optimizing the model").
    #[error("tract failed while {what}: {message}")]
    Tract { what: String, message: String },

    /// tract panicked during `what`; the panic was caught.
    #[error("tract panicked while {what}: {message}")]
    TractPanic { what: String, message: String },

    /// A shape was given for a name that is not a model input.
    #[error("`{name}` is not an input of the model (inputs: {})", model_inputs.join(", "))]
    UnknownInput { name: String, model_inputs: Vec<String> },

    /// A model input was given no concrete shape.
    #[error("no shape given for model input `{name}`")]
    MissingInputShape { name: String },

    /// A sample lacks a model input.
    #[error("sample has no input `{input}` (has: {})", available.join(", "))]
    MissingInput { input: String, available: Vec<String> },

    /// A shape contradicts the one the model declares or was fixed to.
    #[error("input `{input}`: shape {found:?} does not fit the model's {expected}")]
    InputShape { input: String, expected: String, found: Vec<usize> },

    /// An input's element type cannot be converted to the model's.
    #[error("input `{input}`: element type {found}, the model expects {expected}")]
    InputDtype { input: String, expected: String, found: String },

    /// A failure while running sample `index`.
    #[error("sample {index}: {error}")]
    Sample {
        index: usize,
        #[source]
        error: Box<VerifyError>,
    },

    /// The two models' outputs cannot be compared (different count, name or shape).
    #[error("outputs differ between the models: {what}")]
    OutputMismatch { what: String },

    /// An option is out of range (e.g. zero latency runs).
    #[error("invalid option: {what}")]
    InvalidOption { what: String },

    /// Asked for something not supported yet (e.g. more than one thread).
    #[error("not supported: {what}")]
    Unsupported { what: String },

    /// The run's time limit ran out before the work was done.
    #[error("the time limit ran out")]
    TimedOut,

    /// Loading or slicing the input data failed.
    #[error(transparent)]
    Data(#[from] DataError),
}
