//! The measurement interface: how a pass asks for measurements on data without running a model.
//!
//! Passes never depend on a runtime. A pass that needs data (quantization calibration, channel
//! importance, least-squares refits, per-layer sensitivity) asks two questions through
//! [`Measure`], which the runner answers with tract on the pipeline's calibration data and tests
//! answer with a small reference implementation:
//!
//! 1. **Stream** chosen intermediate values of a model, sample by sample and in sample order,
//!    into the pass's own accumulator ([`Measure::stream`]). Nothing is buffered across samples:
//!    min/max, histograms, XᵀX sums are the pass's business, and memory does not grow with the
//!    number of samples.
//! 2. **Fidelity** of a candidate graph against the original on the calibration samples
//!    ([`Measure::fidelity`]): SQNR, relative error and whether the pipeline's accuracy thresholds
//!    hold there. Choices (a fallback set, a pruning ratio) are made on these calibration figures;
//!    the gate alone looks at the evaluation data.
//!
//! 3. **Latency** of a standalone candidate against a standalone baseline with the same inputs
//!    ([`Measure::latency`]): a layer and its rewrite, cut out of the graph with
//!    [`whittle_graph::extract`], timed by the runner's runtime so a pass can keep only the
//!    rewrites that are measured to be faster there.
//!
//! Answers for the same model and data are cached by the implementation (a fallback loop or a
//! sweep asks the same question many times).

use ndarray::ArrayD;
use serde::Serialize;
use whittle_graph::Model;

/// Why a measurement could not be made.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct MeasureError(pub String);

/// How far a candidate is from the original on the calibration samples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fidelity {
    pub samples: usize,
    /// Lowest per-output signal-to-quantization-noise ratio, dB (`inf` when identical).
    pub min_sqnr_db: f64,
    /// Largest over outputs of max |original - candidate| / max |original|.
    pub relative_max_error: f64,
    /// Whether the pipeline's accuracy thresholds (fidelity and task metrics; latency and size
    /// excluded) hold on the calibration samples; `None` when the pipeline sets none.
    pub thresholds_pass: Option<bool>,
    /// One line: the figures the thresholds were judged on ("sqnr 31.2 dB, strings 0.97").
    pub summary: String,
}

/// A candidate's latency against a baseline, both timed standalone, interleaved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencyComparison {
    pub runs: usize,
    /// Median wall time of one run, milliseconds.
    pub baseline_ms: f64,
    pub candidate_ms: f64,
    /// median(candidate) / median(baseline), with its 95% confidence interval.
    pub ratio: f64,
    pub ci95: (f64, f64),
}

impl LatencyComparison {
    /// Whether the candidate is measured to be faster: the whole interval is below 1.
    pub fn faster(&self) -> bool {
        self.ci95.1 < 1.0
    }
}

impl std::fmt::Display for LatencyComparison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "latency {:.3} -> {:.3} ms ({:.2}x [{:.2}, {:.2}], {} runs)",
            self.baseline_ms, self.candidate_ms, self.ratio, self.ci95.0, self.ci95.1, self.runs
        )
    }
}

/// Receives the values asked for, one sample at a time, in sample order: `values[i]` is the
/// `i`-th name asked for, as f32.
pub type Sink<'s> = dyn FnMut(usize, &[ArrayD<f32>]) -> Result<(), MeasureError> + 's;

/// Measurements on the calibration data (see the module documentation).
pub trait Measure: Sync {
    /// Number of calibration samples.
    fn samples(&self) -> usize;

    /// Runs `model` on every calibration sample, in order, and hands `sink` the named values
    /// (intermediate values or outputs of `model`, float or not) of each sample.
    fn stream(&self, model: &Model, values: &[String], sink: &mut Sink<'_>) -> Result<(), MeasureError>;

    /// How far `candidate` is from the original model of the run on the calibration samples.
    fn fidelity(&self, candidate: &Model) -> Result<Fidelity, MeasureError>;

    /// [`Measure::fidelity`] on the first `samples` calibration samples only (all of them when
    /// `samples` is 0 or more than there are): for sweeps that ask hundreds of questions
    /// (per-layer sensitivity), where a few samples rank the candidates as well as all of them.
    fn fidelity_on(&self, candidate: &Model, samples: usize) -> Result<Fidelity, MeasureError> {
        let _ = samples;
        self.fidelity(candidate)
    }

    /// A fingerprint of the calibration data (files and settings): statistics saved with one
    /// are reused only with the same data.
    fn data_fingerprint(&self) -> String;

    /// Times `candidate` against `baseline` (standalone models with the same inputs, of fixed
    /// shapes) on deterministic pseudo-random inputs, `runs` runs each, interleaved.
    fn latency(&self, _baseline: &Model, _candidate: &Model, _runs: usize) -> Result<LatencyComparison, MeasureError> {
        Err(MeasureError("this measurement cannot time models".into()))
    }

    /// Hands a figure to the run's log (progress of a long measurement, a round of a fallback).
    fn log(&self, _line: &str) {}
}
