//! The runner's answer to the passes' measurement interface ([`whittle_passes::measure`]): tract
//! on the pipeline's calibration data.
//!
//! - `stream`: the values asked for are made outputs of a copy of the model (tract keeps a value
//!   that is an output; after optimisation an intermediate name may be fused away), loaded once,
//!   and run on the samples in chunks of one sample per worker thread; each chunk's values go to
//!   the pass's sink in sample order, then are dropped. Memory: one chunk's activations.
//! - `fidelity`: the candidate's outputs on the calibration samples against the original's
//!   (computed once, on first use), judged by the pipeline's own accuracy thresholds (every
//!   threshold but size and latency) with the same comparison code the gate uses. Answers are
//!   cached by the candidate's bytes.
//! - `latency`: both standalone models loaded with their declared input shapes and timed with the
//!   gate's protocol (`verify::measure_latency`: interleaved, paired bootstrap interval) on
//!   pseudo-random inputs from a fixed seed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use ndarray::ArrayD;
use rayon::prelude::*;
use sha2::Digest;
use whittle_graph::Model;
use whittle_passes::measure::{Fidelity, LatencyComparison, Measure, MeasureError, Sink};

use crate::data::{InputSet, InputShape, Labels};
use crate::gate::{self, CheckStatus, Measured};
use crate::pipeline::VerifySpec;
use crate::verify::{self, CompareOptions, Runnable};

/// The original's outputs on the calibration samples, and the output names.
type Reference = std::sync::Arc<(Vec<Vec<ArrayD<f32>>>, Vec<String>)>;

/// Measurements with tract on the calibration set.
pub struct TractMeasure<'a> {
    data: &'a InputSet,
    shapes: Vec<InputShape>,
    original: Vec<u8>,
    verify: &'a VerifySpec,
    compare: CompareOptions,
    pool: Option<&'a rayon::ThreadPool>,
    reference: Mutex<Option<Reference>>,
    fidelity_cache: Mutex<HashMap<(Vec<u8>, usize), Fidelity>>,
    used: AtomicBool,
    log: Mutex<Vec<String>>,
    data_fingerprint: String,
}

impl<'a> TractMeasure<'a> {
    /// `data_fingerprint`: of the calibration files and settings (see [`Measure::data_fingerprint`]).
    pub fn new(
        data: &'a InputSet,
        shapes: Vec<InputShape>,
        original: &Model,
        verify: &'a VerifySpec,
        compare: CompareOptions,
        pool: Option<&'a rayon::ThreadPool>,
        data_fingerprint: String,
    ) -> TractMeasure<'a> {
        TractMeasure {
            data,
            shapes,
            original: whittle_graph::encode_for_runtime(original),
            verify,
            compare,
            pool,
            reference: Mutex::new(None),
            fidelity_cache: Mutex::new(HashMap::new()),
            used: AtomicBool::new(false),
            log: Mutex::new(Vec::new()),
            data_fingerprint,
        }
    }

    /// Whether any pass asked for a measurement.
    pub fn used(&self) -> bool {
        self.used.load(Ordering::Relaxed)
    }

    /// The lines passes logged, in order.
    pub fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut self.log.lock().expect("log lock"))
    }

    fn load(&self, bytes: &[u8]) -> Result<Runnable, MeasureError> {
        verify::load_model(bytes, &self.shapes).map_err(|e| MeasureError(format!("tract cannot load the model to measure: {e}")))
    }

    fn workers(&self) -> usize {
        self.pool.map_or_else(rayon::current_num_threads, |p| p.current_num_threads()).max(1)
    }

    /// The original's outputs on every calibration sample (computed on first use; the lock is
    /// held only while computing them, so fidelity questions can be asked in parallel).
    fn reference(&self) -> Result<Reference, MeasureError> {
        let mut reference = self.reference.lock().expect("reference lock");
        if reference.is_none() {
            let original = self.load(&self.original)?;
            let mut outs = Vec::with_capacity(self.data.len());
            self.run_each(&original, self.data.len(), &mut |_, o| {
                outs.push(o);
                Ok(())
            })?;
            *reference = Some(std::sync::Arc::new((outs, original.output_names().to_vec())));
        }
        Ok(reference.as_ref().expect("computed above").clone())
    }

    /// Runs `model` on the first `n` samples, a chunk of samples at a time (in parallel within a
    /// chunk), and hands each sample's outputs to `each` in sample order.
    fn run_each(
        &self,
        model: &Runnable,
        n: usize,
        each: &mut dyn FnMut(usize, Vec<ArrayD<f32>>) -> Result<(), MeasureError>,
    ) -> Result<(), MeasureError> {
        let chunk = self.workers();
        let n = n.min(self.data.len());
        let mut start = 0;
        while start < n {
            let end = (start + chunk).min(n);
            let run = || {
                (start..end)
                    .into_par_iter()
                    .map(|i| {
                        let sample = self.data.sample(i).map_err(|e| MeasureError(e.to_string()))?;
                        model.run(&sample).map_err(|e| MeasureError(format!("calibration sample {i}: {e}")))
                    })
                    .collect::<Result<Vec<_>, _>>()
            };
            let outputs = match self.pool {
                Some(p) => p.install(run)?,
                None => run()?,
            };
            for (k, out) in outputs.into_iter().enumerate() {
                each(start + k, out)?;
            }
            start = end;
        }
        Ok(())
    }
}

impl Measure for TractMeasure<'_> {
    fn samples(&self) -> usize {
        self.data.len()
    }

    fn stream(&self, model: &Model, values: &[String], sink: &mut Sink<'_>) -> Result<(), MeasureError> {
        self.used.store(true, Ordering::Relaxed);
        let mut tapped = model.clone();
        let g = &mut tapped.graph;
        for name in values {
            let v = g.value_by_name(name).ok_or_else(|| MeasureError(format!("the model has no value `{name}` to measure")))?;
            if g.constant(v).is_some() {
                return Err(MeasureError(format!("`{name}` is a constant: read it from the graph, not by running the model")));
            }
            if !g.add_output(v) && !g.is_graph_output(v) {
                return Err(MeasureError(format!("`{name}` has no known element type (run shape inference on the model to measure)")));
            }
        }
        let runnable = self.load(&whittle_graph::encode_for_runtime(&tapped))?;
        let index: Vec<usize> = values
            .iter()
            .map(|n| runnable.output_names().iter().position(|o| o == n).ok_or_else(|| MeasureError(format!("tract lost the value `{n}`"))))
            .collect::<Result<_, _>>()?;
        self.run_each(&runnable, self.data.len(), &mut |i, mut outputs| {
            // A value asked for twice is handed over twice (moved the last time).
            let picked: Vec<ArrayD<f32>> = index
                .iter()
                .enumerate()
                .map(|(j, &k)| if index[j + 1..].contains(&k) { outputs[k].clone() } else { std::mem::take(&mut outputs[k]) })
                .collect();
            sink(i, &picked)
        })
    }

    fn fidelity(&self, candidate: &Model) -> Result<Fidelity, MeasureError> {
        self.fidelity_on(candidate, 0)
    }

    fn fidelity_on(&self, candidate: &Model, samples: usize) -> Result<Fidelity, MeasureError> {
        self.used.store(true, Ordering::Relaxed);
        let n = if samples == 0 { self.data.len() } else { samples.min(self.data.len()) };
        let bytes = whittle_graph::encode_for_runtime(candidate);
        let key = (sha2::Sha256::digest(&bytes).to_vec(), n);
        if let Some(f) = self.fidelity_cache.lock().expect("cache lock").get(&key) {
            return Ok(f.clone());
        }
        let reference = self.reference()?;
        let (reference, names) = (&reference.0[..n], &reference.1);
        let model = self.load(&bytes)?;
        let mut outs = Vec::with_capacity(n);
        self.run_each(&model, n, &mut |_, o| {
            outs.push(o);
            Ok(())
        })?;
        let labels: Option<Labels> = self.data.labels().map(|l| l.truncated(n));
        let cmp = verify::compare(reference, &outs, names, labels.as_ref(), &self.compare).map_err(|e| MeasureError(e.to_string()))?;
        let fidelity = judge(self.verify, &cmp);
        self.fidelity_cache.lock().expect("cache lock").insert(key, fidelity.clone());
        Ok(fidelity)
    }

    fn latency(&self, baseline: &Model, candidate: &Model, runs: usize) -> Result<LatencyComparison, MeasureError> {
        use rand::{RngExt, SeedableRng};
        self.used.store(true, Ordering::Relaxed);
        let g = &baseline.graph;
        let mut shapes = Vec::new();
        let mut sample = Vec::new();
        let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(0);
        for v in g.inputs() {
            let value = g.value(v);
            let dims = value.shape.as_ref().and_then(|s| s.concrete()).filter(|d| d.iter().all(|&d| d >= 0));
            let (Some(dims), Some(whittle_graph::DataType::Float)) = (dims, value.dtype) else {
                return Err(MeasureError(format!("timing needs f32 inputs of fixed shapes; `{}` is not one", value.name)));
            };
            let dims: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
            let values: Vec<f32> = (0..dims.iter().product::<usize>()).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let array = ArrayD::from_shape_vec(dims.clone(), values).map_err(|e| MeasureError(e.to_string()))?;
            sample.push((value.name.clone(), tract_onnx::prelude::Tensor::from(array)));
            shapes.push((value.name.clone(), dims));
        }
        let load = |m: &Model| {
            verify::load_model(&whittle_graph::encode_for_runtime(m), &shapes)
                .map_err(|e| MeasureError(format!("tract cannot load the model to time: {e}")))
        };
        let (a, b) = (load(baseline)?, load(candidate)?);
        let options = verify::LatencyOptions { warmup: 2, runs, ..verify::LatencyOptions::default() };
        let r = verify::measure_latency(&a, &b, &sample, &options).map_err(|e| MeasureError(format!("timing: {e}")))?;
        Ok(LatencyComparison {
            runs,
            baseline_ms: r.original.median_ms,
            candidate_ms: r.candidate.median_ms,
            ratio: r.ratio.median_ratio,
            ci95: (r.ratio.ci95_low, r.ratio.ci95_high),
        })
    }

    fn data_fingerprint(&self) -> String {
        self.data_fingerprint.clone()
    }

    fn log(&self, line: &str) {
        self.log.lock().expect("log lock").push(line.to_string());
    }
}

/// The pipeline's accuracy thresholds (not size, not latency) on a comparison.
fn judge(spec: &VerifySpec, cmp: &verify::Comparison) -> Fidelity {
    let g = gate::evaluate(spec, &Measured { comparison: Some(cmp), ..Measured::default() });
    let accuracy: Vec<&gate::Check> = g
        .checks
        .iter()
        .filter(|c| c.name != "max_size_ratio" && c.name != "max_latency_ratio" && c.status != CheckStatus::NotApplicable)
        .collect();
    let thresholds_pass = (!accuracy.is_empty()).then(|| accuracy.iter().all(|c| c.status == CheckStatus::Passed));
    let min_sqnr = cmp.outputs.iter().map(|o| o.fidelity.sqnr_db).fold(f64::INFINITY, f64::min);
    let rel = cmp
        .outputs
        .iter()
        .map(|o| o.fidelity.max_abs_error / if o.fidelity.max_abs_reference > 0.0 { o.fidelity.max_abs_reference } else { 1.0 })
        .fold(0.0, f64::max);
    let mut summary = vec![format!("sqnr {min_sqnr:.1} dB")];
    summary.extend(
        accuracy.iter().map(|c| format!("{} {:.4} ({})", c.name, c.value, if c.status == CheckStatus::Passed { "ok" } else { "fails" })),
    );
    Fidelity { samples: cmp.samples, min_sqnr_db: min_sqnr, relative_max_error: rel, thresholds_pass, summary: summary.join(", ") }
}
